"""SOAP inbound authentication: WS-Security UsernameToken (digest and text) and HTTP basic.

Tokens are built by zeep's own ``UsernameToken`` (the client side silobridge's SOAP targets
use), so these tests pin interoperability with a real WS-Security implementation, not just with
tokens written the way the checker reads them.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from prometheus_client import REGISTRY
from zeep.wsse.username import UsernameToken

from adapters.soap.config import SalesforceConfig, SoapEndpointConfig
from adapters.soap.inbound import SoapInbound
from adapters.soap.protocol import SOAP11_ENV, SoapFault
from adapters.soap.salesforce import SalesforceInbound
from adapters.soap.wsse import WSSE_NS, WSU_NS, NonceCache, UsernameTokenCheck
from middleware.errors import ConfigError
from tests.unit.soap.helpers import EXAMPLES, TEXT_XML, MemoryPublisher, endpoint_client

WSDL = EXAMPLES / "soap-inbound" / "shipments.wsdl"
NS = "urn:silobridge:examples:shipments"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
REQUEST = (f'<ReportShipments xmlns="{NS}"><Warehouse>W1</Warehouse><Shipment>'
           "<ShipmentId>S1</ShipmentId><OrderNo>SO-1</OrderNo><Packages>1</Packages>"
           "<ShippedAt>2024-05-01T10:00:00Z</ShippedAt></Shipment></ReportShipments>")


def _signed(token: UsernameToken | None, body: str = REQUEST) -> bytes:
    """A SOAP 1.1 request whose header zeep's UsernameToken filled in."""
    envelope = etree.fromstring(
        f'<s:Envelope xmlns:s="{SOAP11_ENV}"><s:Header/><s:Body>{body}</s:Body></s:Envelope>')
    if token is not None:
        envelope, _ = token.apply(envelope, {})
    result: bytes = etree.tostring(envelope)
    return result


def _header(token: UsernameToken) -> list[etree._Element]:
    return list(etree.fromstring(_signed(token))[0])


def _check(password_type: str = "any", max_age: int = 300, capacity: int = 100,
           now: datetime = NOW) -> UsernameTokenCheck:
    return UsernameTokenCheck("erp", "s3cret", password_type, max_age,
                              NonceCache(capacity, ttl=2 * max_age), retry_after=7,
                              clock=lambda: now.timestamp())


def _digest(password: str = "s3cret", user: str = "erp", created: datetime = NOW,
            nonce: str = "0123456789abcdef") -> UsernameToken:
    return UsernameToken(user, password, use_digest=True, created=created, nonce=nonce)


def _refused(check: UsernameTokenCheck, header: list[etree._Element]) -> SoapFault:
    with pytest.raises(SoapFault) as caught:
        check.check(header)
    return caught.value


def test_wsse_digest_and_text_tokens_made_by_zeep_are_accepted() -> None:
    check = _check()
    check.check(_header(_digest()))
    check.check(_header(UsernameToken("erp", "s3cret")))


def test_wsse_digest_is_base64_sha1_of_nonce_created_and_password() -> None:
    # Given a token written by hand from the profile's formula (no zeep involved)
    nonce, created = b"\x01\x02nonce-bytes", "2026-01-02T03:04:05Z"
    digest = base64.b64encode(hashlib.sha1(nonce + created.encode() + b"s3cret").digest())
    profile = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
    header = etree.fromstring(
        f'<w:Security xmlns:w="{WSSE_NS}" xmlns:u="{WSU_NS}"><w:UsernameToken>'
        f"<w:Username>erp</w:Username><w:Password Type='{profile}#PasswordDigest'>"
        f"{digest.decode()}</w:Password><w:Nonce>{base64.b64encode(nonce).decode()}</w:Nonce>"
        f"<u:Created>{created}</u:Created></w:UsernameToken></w:Security>")
    _check().check([header])
    wrong = base64.b64encode(hashlib.sha1(nonce + b"s3cret").digest()).decode()
    tampered = etree.fromstring(etree.tostring(header).replace(digest, wrong.encode()))
    assert _refused(_check(), [tampered]).reason == "auth_failed"


def test_wsse_wrong_user_and_wrong_password_get_the_same_answer() -> None:
    answers = set()
    for token in (_digest(password="nope"), _digest(user="other"),
                  UsernameToken("erp", "nope"), UsernameToken("other", "s3cret")):
        fault = _refused(_check(), _header(token))
        answers.add((fault.code, fault.message, fault.reason))
    assert answers == {("Client", "WS-Security UsernameToken: the user name or password is "
                        "wrong", "auth_failed")}


def test_wsse_replayed_digest_is_refused_within_its_window() -> None:
    check = _check()
    header = _header(_digest())
    check.check(header)
    fault = _refused(check, header)
    assert (fault.code, fault.reason) == ("Client", "auth_replay")
    # a fresh nonce from the same sender is fine
    check.check(_header(_digest(nonce="another nonce")))


def test_wsse_created_outside_the_window_is_refused_either_side() -> None:
    for skew in (timedelta(seconds=-301), timedelta(seconds=301)):
        fault = _refused(_check(), _header(_digest(created=NOW + skew)))
        assert fault.reason == "auth_expired"
        assert "300 s away from this server's clock" in fault.message
    _check().check(_header(_digest(created=NOW - timedelta(seconds=299))))


def test_wsse_password_type_restriction_is_enforced() -> None:
    fault = _refused(_check("digest"), _header(UsernameToken("erp", "s3cret")))
    assert (fault.reason, fault.message) == (
        "auth_password_type", "WS-Security UsernameToken: this endpoint accepts PasswordDigest "
        "only")
    assert _refused(_check("text"), _header(_digest())).reason == "auth_password_type"


@pytest.mark.parametrize(("mutate", "text"), [
    (lambda t: t.remove(t.find(f"{{{WSU_NS}}}Created")), "a PasswordDigest needs wsu:Created"),
    (lambda t: t.remove(t.find(f"{{{WSSE_NS}}}Nonce")), "a PasswordDigest needs a Nonce"),
    (lambda t: setattr(t.find(f"{{{WSSE_NS}}}Nonce"), "text", "*not base64*"),
     "the Nonce is not Base64"),
    (lambda t: setattr(t.find(f"{{{WSSE_NS}}}Nonce"), "text", "QUFB" * 40),
     "the Nonce must be 1 to 128 Base64 characters"),
    (lambda t: setattr(t.find(f"{{{WSU_NS}}}Created"), "text", "yesterday"),
     "Created is not an xsd:dateTime"),
    (lambda t: t.remove(t.find(f"{{{WSSE_NS}}}Password")), "the Password element is missing"),
], ids=["no-created", "no-nonce", "bad-nonce", "long-nonce", "bad-created", "no-password"])
def test_wsse_malformed_tokens_get_a_precise_client_fault(mutate: Any, text: str) -> None:
    header = _header(_digest())
    mutate(header[0].find(f"{{{WSSE_NS}}}UsernameToken"))
    fault = _refused(_check(), header)
    assert (fault.code, fault.reason) == ("Client", "auth_malformed")
    assert text in fault.message


def test_wsse_missing_token_is_refused() -> None:
    fault = _refused(_check(), [])
    assert (fault.reason, fault.message) == (
        "auth_missing", "this endpoint needs a WS-Security UsernameToken (wsse:Security header)")


def test_wsse_nonce_cache_is_bounded_and_forgets_after_its_ttl() -> None:
    now = [0.0]
    cache = NonceCache(2, ttl=10, clock=lambda: now[0])
    assert (cache.claim(b"a"), cache.claim(b"b"), cache.claim(b"a")) == (True, True, False)
    assert cache.claim(b"c") is None  # full of nonces still valid: refuse, never evict
    now[0] = 10.0
    assert (cache.claim(b"c"), cache.claim(b"a")) == (True, True)


def test_wsse_full_nonce_cache_is_a_retryable_server_fault() -> None:
    check = _check(capacity=100)
    for n in range(100):
        check.check(_header(_digest(nonce=f"nonce-{n}")))
    fault = _refused(check, _header(_digest(nonce="one more")))
    assert (fault.code, fault.reason, fault.headers["Retry-After"]) == (
        "Server", "auth_nonce_cache_full", "7")


# -- on the endpoint ----------------------------------------------------------------------


def _endpoint(tmp_path: Path, publisher: MemoryPublisher, auth: dict[str, Any]) -> Any:
    config = SoapEndpointConfig.model_validate({
        "type": "soap", "name": "ship-auth", "path": "/soap/ship", "wsdl": str(WSDL),
        "system": "erp", "auth": auth, "operations": {"ReportShipments": {
            "each": "Shipment", "reply": {"Accepted": True, "Count": "{count}"},
            "derive": {"entity": {"value": "shipment"}, "action": {"value": "reported"},
                       "id": {"path": "ShipmentId"}}}}})
    return endpoint_client(SoapInbound(config), tmp_path, publisher)[0]


def _rejected(reason: str, endpoint: str = "ship-auth") -> float:
    return REGISTRY.get_sample_value("silobridge_rejected_total", {
        "endpoint": endpoint, "adapter": "soap", "reason": reason}) or 0.0


def _faultstring(response: Any) -> str:
    return etree.fromstring(response.content).findtext(
        f"{{{SOAP11_ENV}}}Body/{{{SOAP11_ENV}}}Fault/faultstring") or ""


def test_wsse_endpoint_accepts_a_token_it_understands_and_counts_refusals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SB_TEST_SOAP_PW", "s3cret")
    publisher = MemoryPublisher()
    client = _endpoint(tmp_path, publisher, {"scheme": "wsse", "username": "erp",
                                             "password_env": "SB_TEST_SOAP_PW"})
    # zeep marks nothing mustUnderstand; other stacks (WCF, CXF) do: that must still pass
    signed = etree.fromstring(_signed(_digest(created=datetime.now(UTC))))
    signed[0][0].set(f"{{{SOAP11_ENV}}}mustUnderstand", "1")
    accepted = client.post("/soap/ship", content=etree.tostring(signed), headers=TEXT_XML)
    assert accepted.status_code == 200, accepted.text
    assert publisher.ids == ["S1"]
    before = _rejected("auth_missing")
    missing = client.post("/soap/ship", content=_signed(None), headers=TEXT_XML)
    assert missing.status_code == 500
    assert "soapenv:Client" in missing.text
    assert _faultstring(missing) == ("this endpoint needs a WS-Security UsernameToken "
                                     "(wsse:Security header)")
    assert _rejected("auth_missing") == before + 1
    assert publisher.ids == ["S1"]


def test_wsse_header_marked_must_understand_is_refused_without_wsse_auth(
    tmp_path: Path,
) -> None:
    config = SoapEndpointConfig.model_validate({
        "type": "soap", "name": "ship-open", "path": "/soap/ship", "wsdl": str(WSDL),
        "system": "erp", "operations": {"ReportShipments": {
            "reply": {"Accepted": True, "Count": 0},
            "derive": {"entity": {"value": "s"}, "action": {"value": "a"}}}}})
    client = endpoint_client(SoapInbound(config), tmp_path, MemoryPublisher())[0]
    signed = etree.fromstring(_signed(_digest()))
    signed[0][0].set(f"{{{SOAP11_ENV}}}mustUnderstand", "1")
    response = client.post("/soap/ship", content=etree.tostring(signed), headers=TEXT_XML)
    assert "soapenv:MustUnderstand" in response.text


def test_basic_endpoint_answers_401_with_a_challenge_and_reads_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SB_TEST_SOAP_PW", "s3cret")
    publisher = MemoryPublisher()
    client = _endpoint(tmp_path, publisher, {"scheme": "basic", "username": "erp",
                                             "password_env": "SB_TEST_SOAP_PW"})
    body = _signed(None)
    cases = {"auth_missing": None, "auth_failed": ("erp", "nope"),
             "auth_malformed": "Basic %%%"}
    texts = set()
    for reason, credentials in cases.items():
        before = _rejected(reason)
        headers = dict(TEXT_XML)
        if isinstance(credentials, str):
            headers["Authorization"] = credentials
        response = client.post("/soap/ship", content=body, headers=headers,
                               auth=credentials if isinstance(credentials, tuple) else None)
        assert response.status_code == 401, reason
        assert response.headers["www-authenticate"] == ('Basic realm="silobridge", '
                                                        'charset="UTF-8"')
        assert "soapenv:Client" in response.text
        assert _rejected(reason) == before + 1, reason
        texts.add(_faultstring(response))
    assert "HTTP basic authentication: the user name or password is wrong" in texts
    wrong_user = client.post("/soap/ship", content=body, headers=TEXT_XML, auth=("x", "s3cret"))
    assert _faultstring(wrong_user) == "HTTP basic authentication: the user name or password " \
                                       "is wrong"
    assert publisher.published == []
    ok = client.post("/soap/ship", content=body, headers=TEXT_XML, auth=("erp", "s3cret"))
    assert ok.status_code == 200, ok.text
    assert publisher.ids == ["S1"]


def test_auth_password_variable_missing_fails_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SB_TEST_SOAP_UNSET", raising=False)
    config = SalesforceConfig.model_validate({
        "type": "salesforce-om", "name": "sf", "path": "/soap/sf",
        "organization_id": "00D5e000000AbCd",
        "auth": {"scheme": "basic", "username": "sf", "password_env": "SB_TEST_SOAP_UNSET"}})
    with pytest.raises(ConfigError, match="SB_TEST_SOAP_UNSET"):
        endpoint_client(SalesforceInbound(config), tmp_path, MemoryPublisher())
