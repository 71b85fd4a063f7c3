"""TLS settings and decisions that need no network: listener contexts, config models,
client-certificate rules, certificate reload and the explanation of handshake failures."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from starlette.responses import Response

from adapters.rest import RestTargetConfig
from adapters.rest.inbound_config import RestEndpointConfig
from adapters.soap.config import SalesforceConfig, SoapTargetConfig
from middleware.config.models import (
    ClientCertConfig,
    Config,
    IngressConfig,
    ServerTlsConfig,
    TargetTlsConfig,
)
from middleware.errors import ConfigError
from middleware.ingress import Ingress
from middleware.log import configure_logging
from middleware.tls import (
    ClientCertCheck,
    ReloadingContext,
    describe_tls_failure,
    fingerprint,
    server_context,
    target_context,
)
from tests.tls_helpers import Pki, leaf_der

WEAK = ("CBC", "RC4", "DES", "NULL", "EXPORT", "ANON", "MD5", "PSK")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def _scope(cert_file: str | None) -> dict[str, Any]:
    chain = [ssl.DER_cert_to_PEM_cert(leaf_der(cert_file))] if cert_file else []
    return {"type": "http", "extensions": {"tls": {"client_cert_chain": chain}}}


def test_server_context_offers_only_ecdhe_aead_suites_from_tls12(pki: Pki) -> None:
    context = server_context(pki.server_tls(), client_certs=False)
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    tls12 = [c for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12, "some TLS 1.2 suite must remain for older senders"
    for cipher in tls12:
        assert cipher["kea"] == "kx-ecdhe" and cipher["aead"], cipher["name"]
        assert not any(word in cipher["description"].upper() for word in WEAK), cipher
    assert context.verify_mode is ssl.CERT_NONE  # no client certificate asked for


def test_server_context_asks_for_optional_client_certificates_against_the_client_ca(
    pki: Pki, tmp_path: Path
) -> None:
    clients = Pki(tmp_path, "clients")
    context = server_context(pki.server_tls(client_ca_file=clients.ca_file), client_certs=True)
    assert context.verify_mode is ssl.CERT_OPTIONAL
    [ca] = context.get_ca_certs()
    assert ("organizationName", "silobridge test clients") in [rdn[0] for rdn in ca["subject"]]


def test_tls_config_models_reject_unusable_settings() -> None:
    with pytest.raises(ValidationError, match="64 hex digits"):
        ClientCertConfig(fingerprints=["AB:CD"])
    with pytest.raises(ValidationError, match="RFC 4514"):
        ClientCertConfig(allowed_subjects=["cn = lower case, o=x"])
    with pytest.raises(ValidationError, match="key_file without cert_file"):
        TargetTlsConfig(key_file="k.pem")
    with pytest.raises(ValidationError, match=r"tls\.ca_file would be ignored"):
        RestTargetConfig.model_validate({"url": "https://erp", "verify_tls": False,
                                         "tls": {"ca_file": "ca.pem"}})
    with pytest.raises(ValidationError, match="extra"):
        Config.model_validate({"ingress": {"tls": {"cert_file": "c", "key_file": "k",
                                                   "ciphers": "ALL"}}})
    digest = "AB" * 32
    assert ClientCertConfig(fingerprints=[":".join([digest[i:i + 2] for i in
                                                    range(0, 64, 2)])]).fingerprints == [
        digest.lower()]


def test_tls_options_exist_on_every_endpoint_and_target_kind() -> None:
    tls = {"ca_file": "ca.pem", "cert_file": "c.pem", "key_file": "k.pem"}
    client_cert = {"required": True, "allowed_subjects": ["CN=sf,O=Example"]}
    rest = RestEndpointConfig.model_validate({
        "name": "hook", "path": "/hook", "system": "crm", "client_cert": client_cert,
        "derive": {"entity": {"value": "x"}, "action": {"value": "y"}}})
    salesforce = SalesforceConfig.model_validate({
        "name": "sf", "path": "/sf", "organization_id": "00D5e000000AbCd",
        "client_cert": client_cert})
    soap_target = SoapTargetConfig.model_validate({"wsdl": "x.wsdl", "operation": "Op",
                                                   "tls": tls})
    rest_target = RestTargetConfig.model_validate({"url": "https://erp", "tls": tls})
    assert rest.client_cert == salesforce.client_cert == ClientCertConfig(**client_cert)
    assert soap_target.tls == rest_target.tls == TargetTlsConfig(**tls)


def test_ingress_refuses_a_client_cert_endpoint_without_a_client_ca(pki: Pki) -> None:
    async def ok(_request: object) -> Response:
        return Response()

    rule = ClientCertConfig()
    for config in (IngressConfig(), IngressConfig(tls=pki.server_tls())):
        with pytest.raises(ConfigError, match=r"hook\.client_cert: .*client_ca_file"):
            Ingress(config).add_route("/hook", ok, ["POST"], "hook", client_cert=rule)
    ingress = Ingress(IngressConfig(tls=pki.server_tls(client_ca_file=pki.ca_file)))
    ingress.add_route("/hook", ok, ["POST"], "hook", client_cert=rule)
    assert [route.path for route in ingress.routes] == ["/hook"]  # type: ignore[attr-defined]


def test_client_cert_check_needs_a_listed_certificate(pki: Pki) -> None:
    allowed, _ = pki.issue("sf", "sf.example.com", common_name="sf.example.com")
    other, _ = pki.issue("other", "other.example.com", common_name="other.example.com")
    by_subject = ClientCertCheck(ClientCertConfig(allowed_subjects=[_subject(allowed)]))
    by_fingerprint = ClientCertCheck(ClientCertConfig(
        fingerprints=[fingerprint(leaf_der(allowed))]))
    any_verified = ClientCertCheck(ClientCertConfig())
    optional = ClientCertCheck(ClientCertConfig(required=False, fingerprints=[
        fingerprint(leaf_der(allowed))]))
    for check in (by_subject, by_fingerprint):
        assert check.refusal(_scope(allowed)) is None
        refusal = check.refusal(_scope(other))
        assert refusal is not None and "CN=other.example.com" in refusal
        assert "none was presented" in (check.refusal(_scope(None)) or "")
        assert "none was presented" in (check.refusal({"type": "http"}) or "")
    assert any_verified.refusal(_scope(other)) is None
    assert optional.refusal({"type": "http"}) is None
    assert optional.refusal(_scope(other)) is not None


def _subject(cert_file: str) -> str:
    """The certificate's subject as RFC 4514 text (trustme puts a random OU in each)."""
    from cryptography import x509

    return x509.load_der_x509_certificate(leaf_der(cert_file)).subject.rfc4514_string()


def test_reloading_context_swaps_in_new_files_and_keeps_the_old_on_a_broken_set(
    pki: Pki, tmp_path: Path
) -> None:
    config = pki.server_tls(reload_interval=0.1)
    reloader = ReloadingContext(config, client_certs=False, name="t", where="ingress")
    first = reloader._current
    assert reloader.check() is False  # nothing changed
    # When a renewed certificate replaces the files
    new_cert, new_key = pki.issue("renewed")
    Path(config.cert_file).write_bytes(Path(new_cert).read_bytes())
    Path(config.key_file).write_bytes(Path(new_key).read_bytes())
    _touch(config.cert_file, config.key_file)
    assert reloader.check() is True
    assert reloader._current is not first and reloader.reloads == 1
    # When the certificate is swapped but the key is not (a half-done rotation)
    renewed = reloader._current
    other_cert, _ = pki.issue("other")
    Path(config.cert_file).write_bytes(Path(other_cert).read_bytes())
    _touch(config.cert_file)
    with _json_logs() as logs:
        assert reloader.check() is False
        assert reloader.check() is False  # reported once, not at every interval
    assert reloader._current is renewed and reloader.reloads == 1
    assert [e["event"] for e in logs] == [
        "TLS certificate reload failed; the previous certificate stays in use"]
    assert logs[0]["level"] == "error"


@contextlib.contextmanager
def _json_logs() -> Iterator[list[dict[str, Any]]]:
    """The JSON lines logged inside the block, through the daemon's own logging setup.

    (structlog's ``capture_logs`` misses loggers cached by earlier tests, so the result would
    depend on the order tests run in.)"""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging(json=True, stream=stream)
    found: list[dict[str, Any]] = []
    try:
        yield found
    finally:
        found.extend(json.loads(line) for line in stream.getvalue().splitlines() if line)
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def test_reloading_context_with_broken_files_at_start_is_a_config_error(
    pki: Pki, tmp_path: Path
) -> None:
    cert, _ = pki.issue("lonely")
    wrong_key = tmp_path / "wrong-key.pem"
    _, other_key = pki.issue("unrelated")
    wrong_key.write_bytes(Path(other_key).read_bytes())
    for key in (str(wrong_key), str(tmp_path / "missing.pem")):
        config = ServerTlsConfig(cert_file=cert, key_file=key)
        with pytest.raises(ConfigError, match=r"ops\.tls: cannot load the TLS certificate"):
            ReloadingContext(config, client_certs=False, name="ops", where="ops")


def _touch(*paths: str) -> None:
    for path in paths:  # a later mtime even on coarse file systems
        stat = os.stat(path)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


def test_target_context_names_the_setting_of_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"routes\.target\.tls: cannot load the TLS files"):
        target_context(TargetTlsConfig(ca_file=str(tmp_path / "nope.pem")), "routes.target")
    assert target_context(None, "x").verify_mode is ssl.CERT_REQUIRED


def test_describe_tls_failure_finds_the_ssl_error_inside_client_wrappers() -> None:
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    verify.verify_message = "certificate has expired"

    class Wrapper(Exception):
        pass

    try:
        try:
            raise verify
        except ssl.SSLError as inner:
            raise Wrapper("connect failed", ("host", 443)) from inner
    except Wrapper as outer:
        described = describe_tls_failure(Wrapper("outer", outer))
    assert described is not None
    assert "certificate has expired" in described and "tls.ca_file" in described
    refused = ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] alert")
    refused.reason = "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    assert "tls.cert_file" in (describe_tls_failure(Wrapper(refused)) or "")
    assert describe_tls_failure(ConnectionRefusedError(111, "refused")) is None
