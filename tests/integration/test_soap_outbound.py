"""The zeep outbound adapter against real SOAP peers on loopback (no broker needed).

The demo ERP (spyne) answers real faults; a scripted Starlette peer shows exactly what was
sent (headers, WS-Security) and plays the failures a real network has.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree
from starlette.requests import Request
from starlette.responses import Response

from middleware.envelope import Envelope
from middleware.errors import ConfigError, DeliveryError
from middleware.log import configure_logging
from silobridge_demo.erp_server import DemoErpServer
from tests.integration.rest_helpers import Peer
from tests.integration.soap_helpers import (
    ERP_WSDL,
    order,
    realworld,
    running_erp,
    start_target,
)
from tests.sentinels import nobody_connected

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
ORDER_CREATED = ('<CreateSalesOrderResponse xmlns="urn:silobridge:demo:erp">'
                 "<CreateSalesOrderResult><Id>X</Id></CreateSalesOrderResult>"
                 "</CreateSalesOrderResponse>")
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"


@pytest.fixture
def erp() -> Iterator[DemoErpServer]:
    with running_erp() as server:
        yield server


def _envelope(subject: str = "CRM-O-1") -> Envelope:
    return Envelope.new(source="crm/test", type="crm.order.created", subject=subject, data={})


def _failure(future: object) -> DeliveryError:
    error = future.exception(timeout=15)  # type: ignore[attr-defined]
    assert isinstance(error, DeliveryError), error
    return error


def _reply(xml: str, status: int = 200) -> Response:
    return Response(f'<s:Envelope xmlns:s="{SOAP_ENV}"><s:Body>{xml}</s:Body></s:Envelope>',
                    status_code=status, media_type="text/xml")


def test_soap_target_creates_an_order_once_per_envelope_id(
    tmp_path: Path, erp: DemoErpServer
) -> None:
    target = start_target(tmp_path, wsdl=str(ERP_WSDL), operation="CreateSalesOrder",
                          address=erp.url, idempotency={"argument": "RequestId"})
    envelope = _envelope()
    try:
        first = target.deliver(envelope, order()).result(15)
        second = target.deliver(envelope, order()).result(15)
    finally:
        target.close()
    assert first.response == {"Id": "SO-000001", "Created": True}
    assert second.response == {"Id": "SO-000001", "Created": False}
    assert list(erp.state.orders) == ["SO-000001"]
    assert erp.state.orders["SO-000001"]["RequestId"] == envelope.id


def test_soap_target_client_fault_is_permanent_with_code_string_and_detail(
    tmp_path: Path, erp: DemoErpServer
) -> None:
    target = start_target(tmp_path, wsdl=str(ERP_WSDL), operation="CreateSalesOrder",
                          address=erp.url, idempotency={"argument": "RequestId"})
    try:
        error = _failure(target.deliver(_envelope(), order(currency="XXX")))
    finally:
        target.close()
    assert error.retryable is False
    assert error.details["fault_code"] == "soap11env:Client.UnknownCurrency"
    assert error.details["fault_string"] == "currency 'XXX' is not accepted"
    assert "<field>Currency</field>" in error.details["fault_detail"]
    assert erp.state.orders == {}


def test_soap_target_server_fault_is_retryable_and_the_retry_delivers(
    tmp_path: Path, erp: DemoErpServer
) -> None:
    erp.state.fail_next("CreateSalesOrder", 1)
    target = start_target(tmp_path, wsdl=str(ERP_WSDL), operation="CreateSalesOrder",
                          address=erp.url, idempotency={"argument": "RequestId"})
    envelope = _envelope()
    try:
        error = _failure(target.deliver(envelope, order()))
        delivered = target.deliver(envelope, order()).result(15)
    finally:
        target.close()
    assert error.retryable is True
    assert error.details["fault_code"] == "soap11env:Server.Unavailable"
    assert delivered.response["Created"] is True
    assert len(erp.state.orders) == 1


@pytest.mark.parametrize(("payload", "text"), [
    ({"OrderNo": "O", "Currency": "EUR"}, "Missing element AccountNo"),
    ({**order(), "Bogus": 1}, "unexpected keyword argument 'Bogus'"),
    (["not", "an", "object"], "must be an object of CreateSalesOrder arguments"),
], ids=["missing", "unknown", "not-object"])
def test_soap_target_payload_not_matching_the_wsdl_is_permanent_and_never_sent(
    tmp_path: Path, erp: DemoErpServer, payload: object, text: str
) -> None:
    target = start_target(tmp_path, wsdl=str(ERP_WSDL), operation="CreateSalesOrder",
                          address=erp.url, idempotency={"argument": "RequestId"})
    try:
        error = _failure(target.deliver(_envelope(), payload))
    finally:
        target.close()
    assert error.retryable is False
    assert text in str(error)
    assert erp.state.calls == []


@pytest.mark.parametrize("form", ["env", "file"])
def test_soap_target_sends_wsse_text_token_basic_auth_and_idempotency_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    monkeypatch.setenv("T_WSSE_PW", "s3cr3t-wsse")
    monkeypatch.setenv("T_BASIC_PW", "s3cr3t-basic")
    (tmp_path / "wsse").write_text("s3cr3t-wsse\n")  # as a mounted Secret has it
    (tmp_path / "basic").write_text("s3cr3t-basic")
    secrets = ({"wsse": {"password_env": "T_WSSE_PW"}, "basic": {"password_env": "T_BASIC_PW"}}
               if form == "env" else {"wsse": {"password_file": str(tmp_path / "wsse")},
                                      "basic": {"password_file": str(tmp_path / "basic")}})

    async def answer(_request: Request, _body: bytes) -> Response:
        return _reply(ORDER_CREATED)

    with Peer(answer) as peer:
        target = start_target(tmp_path, wsdl=str(ERP_WSDL), operation="CreateSalesOrder",
                              address=f"{peer.url}/soap",
                              wsse={"username": "bridge", **secrets["wsse"]},
                              basic={"username": "svc", **secrets["basic"]})
        envelope = _envelope()
        try:
            target.deliver(envelope, order("R-1")).result(15)
        finally:
            target.close()
        [(_, _, headers, body)] = peer.calls("/soap")
    token = etree.fromstring(body).find(f".//{{{WSSE}}}UsernameToken")
    assert token is not None
    assert token.findtext(f"{{{WSSE}}}Username") == "bridge"
    password = token.find(f"{{{WSSE}}}Password")
    assert password is not None and password.text == "s3cr3t-wsse"
    assert password.get("Type", "").endswith("#PasswordText")
    assert headers["authorization"] == "Basic " + base64.b64encode(b"svc:s3cr3t-basic").decode()
    assert headers["idempotency-key"] == envelope.id
    assert headers["soapaction"] == '"CreateSalesOrder"'


def test_soap_target_wsse_digest_is_sha1_of_nonce_created_and_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T_WSSE_PW", "s3cr3t-wsse")

    async def answer(_request: Request, _body: bytes) -> Response:
        return _reply(ORDER_CREATED)

    with Peer(answer) as peer:
        target = start_target(tmp_path, wsdl=str(ERP_WSDL), operation="CreateSalesOrder",
                              address=f"{peer.url}/soap", wsse={
                                  "username": "bridge", "password_env": "T_WSSE_PW",
                                  "digest": True})
        try:
            target.deliver(_envelope(), order("R-1")).result(15)
        finally:
            target.close()
        [(_, _, _, body)] = peer.calls("/soap")
    token = etree.fromstring(body).find(f".//{{{WSSE}}}UsernameToken")
    assert token is not None
    nonce = base64.b64decode(token.findtext(f"{{{WSSE}}}Nonce") or "")
    created = token.findtext(f"{{{WSU}}}Created") or ""
    password = token.find(f"{{{WSSE}}}Password")
    assert password is not None and password.get("Type", "").endswith("#PasswordDigest")
    expected = base64.b64encode(hashlib.sha1(nonce + created.encode() + b"s3cr3t-wsse")
                                .digest()).decode()
    assert password.text == expected
    assert b"s3cr3t-wsse" not in body


def test_soap_target_logged_envelopes_have_passwords_masked(
    tmp_path: Path, erp: DemoErpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T_WSSE_PW", "s3cr3t-wsse")
    out = io.StringIO()
    configure_logging(json=True, level="debug", stream=out)
    target = start_target(tmp_path, wsdl=str(ERP_WSDL), operation="CreateSalesOrder",
                          address=erp.url, idempotency={"argument": "RequestId"},
                          wsse={"username": "bridge", "password_env": "T_WSSE_PW"})
    try:
        target.deliver(_envelope(), order()).result(15)
    finally:
        target.close()
        configure_logging(json=True, level="warning")
    logged = out.getvalue()
    assert '"soap request"' in logged and '"soap response"' in logged
    assert "UsernameToken" in logged and "***" in logged
    assert "s3cr3t-wsse" not in logged


@pytest.mark.parametrize(("status", "body", "retryable"), [
    (503, b"", True),
    (500, b"<html>oops</html>", True),
    (200, b"this is not xml", True),
    (404, b"", False),
], ids=["503", "500-html", "200-garbage", "404"])
def test_soap_target_http_failures_are_classified(
    tmp_path: Path, status: int, body: bytes, retryable: bool
) -> None:
    async def answer(_request: Request, _body: bytes) -> Response:
        return Response(body, status_code=status, media_type="text/html")

    with Peer(answer) as peer:
        target = start_target(tmp_path, wsdl=str(ERP_WSDL), operation="CreateSalesOrder",
                              address=f"{peer.url}/soap")
        try:
            error = _failure(target.deliver(_envelope(), order("R-1")))
        finally:
            target.close()
    assert error.retryable is retryable


def test_soap_target_timeout_is_retryable_and_deliver_does_not_block(tmp_path: Path) -> None:
    async def slow(_request: Request, _body: bytes) -> Response:
        await asyncio.sleep(2)
        return _reply("")

    with Peer(slow) as peer:
        target = start_target(tmp_path, wsdl=str(ERP_WSDL), operation="CreateSalesOrder",
                              address=f"{peer.url}/soap", timeout=0.3)
        try:
            future = target.deliver(_envelope(), order("R-1"))
            assert not future.done()  # returned at once: before the call could time out
            error = _failure(future)
        finally:
            target.close()
    assert error.retryable is True
    assert "timed out" in str(error)


def test_soap_target_connection_refused_is_retryable(tmp_path: Path) -> None:
    target = start_target(tmp_path, wsdl=str(ERP_WSDL), operation="CreateSalesOrder",
                          address="http://127.0.0.1:9/soap")
    try:
        error = _failure(target.deliver(_envelope(), order("R-1")))
    finally:
        target.close()
    assert error.retryable is True


def test_soap_target_calls_the_real_sap_wsdl_with_ws_policy(tmp_path: Path) -> None:
    wsdl = realworld("erp-wsdl/sap-ecc-ZRFCSDPRICESIMULATE_V3.wsdl")
    response = ('<n0:ZrfcsdpricesimulateResponse xmlns:n0="urn:sap-com:document:sap:soap:'
                'functions:mc-style"><EsHeader><Grossvalue>19.0000</Grossvalue>'
                "<Netvalue>17.5000</Netvalue><Resulttype>S</Resulttype><Resultmessage>ok"
                "</Resultmessage></EsHeader><EtItems/><ItItems/>"
                "</n0:ZrfcsdpricesimulateResponse>")

    async def answer(_request: Request, _body: bytes) -> Response:
        return _reply(response)

    header = {"Portalorderid": "CRM-O-1", "Ordertype": "ZOR", "Salesorg": "1000",
              "Channel": "10", "Division": "00", "Salesoffice": "", "Salesgroup": "",
              "Soldto": "100001", "Sendto": "100001", "Pricedate": "20240501"}
    with Peer(answer) as peer:
        target = start_target(tmp_path, wsdl=str(wsdl), operation="Zrfcsdpricesimulate",
                              address=f"{peer.url}/sap")
        try:
            delivered = target.deliver(_envelope(), {"IsHeader": header, "ItItems": {"item": [
                {"Sequenceno": "10", "Productid": "M-01", "Orderquantity": "2.000",
                 "Platform": "CRM"}]}}).result(15)
        finally:
            target.close()
        [(_, _, headers, body)] = peer.calls("/sap")
    sent = etree.fromstring(body)
    assert sent.findtext(".//IsHeader/Soldto") == "100001"
    assert sent.findtext(".//ItItems/item/Productid") == "M-01"
    assert headers["soapaction"] == '""'
    assert delivered.response["EsHeader"] == {"Grossvalue": "19.0000", "Netvalue": "17.5000",
                                              "Resulttype": "S", "Resultmessage": "ok"}


def test_soap_target_calls_the_real_nav_codeunit_wsdl(tmp_path: Path) -> None:
    wsdl = realworld("erp-wsdl/nav-codeunit-ServiceProg.wsdl")
    ns = "urn:microsoft-dynamics-schemas/codeunit/ServiceProg"

    async def answer(_request: Request, _body: bytes) -> Response:
        return _reply(f'<GetItemStock_Result xmlns="{ns}"><return_value>42</return_value>'
                      "</GetItemStock_Result>")

    with Peer(answer) as peer:
        target = start_target(tmp_path, wsdl=str(wsdl), operation="GetItemStock",
                              address=f"{peer.url}/nav")
        try:
            delivered = target.deliver(_envelope(), {"itemNo2_TM": "ITEM-7"}).result(15)
        finally:
            target.close()
        [(_, _, headers, body)] = peer.calls("/nav")
    assert etree.fromstring(body).findtext(f".//{{{ns}}}itemNo2_TM") == "ITEM-7"
    assert headers["soapaction"] == f'"{ns}:GetItemStock"'
    assert delivered.response == "42"


def test_soap_target_start_fails_naming_the_wsdl_and_the_cause(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.wsdl"
    with pytest.raises(ConfigError, match=f"{missing}: wsdl: cannot load the WSDL"):
        start_target(tmp_path, wsdl=str(missing), operation="X")
    with pytest.raises(ConfigError) as caught:
        start_target(tmp_path, wsdl=str(ERP_WSDL), operation="CreateSalesOrders")
    assert "no operation 'CreateSalesOrders' in {urn:silobridge:demo:erp}DemoErp " \
           "(did you mean 'CreateSalesOrder'?)" in str(caught.value)
    with pytest.raises(ConfigError, match="CreateSalesOrder has no argument 'RequestID' "
                                          r"\(did you mean 'RequestId'\?\)"):
        start_target(tmp_path, wsdl=str(ERP_WSDL), operation="CreateSalesOrder",
                     idempotency={"argument": "RequestID"})
    with pytest.raises(ConfigError, match=r"routes\.target\.basic\.password_env: environment "
                                          r"variable 'T_UNSET_PW' is not set"):
        start_target(tmp_path, wsdl=str(ERP_WSDL), operation="CreateSalesOrder",
                     basic={"username": "u", "password_env": "T_UNSET_PW"})
    with pytest.raises(ConfigError, match=re.escape(
            f"routes.target.wsse.password_file: secret file '{tmp_path}/absent' does not exist")):
        start_target(tmp_path, wsdl=str(ERP_WSDL), operation="CreateSalesOrder",
                     wsse={"username": "u", "password_file": str(tmp_path / "absent")})


def test_soap_target_never_fetches_a_remote_import(tmp_path: Path) -> None:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        wsdl = tmp_path / "remote.wsdl"
        wsdl.write_text(
            '<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" targetNamespace="urn:r">'
            f'<import namespace="urn:x" location="http://127.0.0.1:{port}/x.wsdl"/>'
            "</definitions>")
        with pytest.raises(ConfigError, match="cannot load the WSDL"):
            start_target(tmp_path, wsdl=str(wsdl), operation="X")
        assert nobody_connected(listener)


def test_soap_target_upserts_accounts_and_reads_shipments_from_the_demo_erp(
    tmp_path: Path, erp: DemoErpServer
) -> None:
    upsert = start_target(tmp_path, wsdl=str(ERP_WSDL), operation="UpsertAccount",
                          address=erp.url, idempotency={"argument": "RequestId"})
    shipments = start_target(tmp_path, wsdl=str(ERP_WSDL), operation="ReportShipments",
                             address=erp.url)
    orders = start_target(tmp_path, wsdl=str(ERP_WSDL), operation="CreateSalesOrder",
                          address=erp.url, idempotency={"argument": "RequestId"})
    try:
        account = {"AccountNo": "C-1001", "Name": "Muster GmbH", "Country": "DE"}
        created = upsert.deliver(_envelope(), account).result(15).response
        renamed = upsert.deliver(_envelope(), {**account, "Name": "Muster AG"}).result(15)
        order_id = orders.deliver(_envelope(), order()).result(15).response["Id"]
        erp.state.ship(order_id)
        reported = shipments.deliver(_envelope(), {}).result(15).response
    finally:
        for target in (upsert, shipments, orders):
            target.close()
    assert created == {"Id": "AC-000001", "Created": True}
    assert renamed.response == {"Id": "AC-000001", "Created": False}
    assert erp.state.accounts["C-1001"]["Name"] == "Muster AG"
    [shipment] = reported
    assert (shipment["OrderId"], shipment["OrderNo"]) == (order_id, "CRM-O-1")
    assert shipment["ShippedAt"]
