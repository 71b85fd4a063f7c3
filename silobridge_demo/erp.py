"""A small SOAP ERP to integrate against: spyne serves it, zeep (our outbound adapter) calls it.

It exists so the end-to-end demo, compose and the tests talk to a real, independently written
SOAP stack instead of a mock of our own. It behaves like the ERPs we target in the ways that
matter to the middleware:

- ``RequestId`` is an idempotency key (per operation): a resent request returns the first
  answer (same order id, ``Created=false``) instead of creating a second record;
- business errors are SOAP ``Client`` faults with a ``detail`` (unknown currency, empty order);
- ``state.fail_next(operation, n)`` makes the next n calls answer a ``Server`` fault, the way a
  busy ERP does, so retries can be shown;
- ``state.delay_next(operation, seconds)`` makes the next call do its work and answer late, the
  way a lost answer looks to the caller (it times out and resends the same RequestId);
- everything received is kept in ``ErpState`` (and served as JSON at ``/state``) for inspection;
- every change of an account is reported to ``state.on_change`` (``ErpFeed`` posts it to
  silobridge as a change event), the writes of the SOAP operations as well as the edits of the
  ERP's own users (``state.edit``). Accounts carry two fields only the ERP sets (``CreditLimit``,
  ``PaymentTerms``): the SOAP operations leave them as they are.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from lxml import etree
from spyne import (
    Application,
    Array,
    Boolean,
    ComplexModel,
    DateTime,
    Integer,
    ServiceBase,
    Unicode,
    rpc,
)
from spyne import Decimal as SpyneDecimal
from spyne.model.fault import Fault
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication

__all__ = ["NAMESPACE", "ErpState", "build_wsgi_app", "generate_wsdl"]

NAMESPACE = "urn:silobridge:demo:erp"
CURRENCIES = frozenset({"CNY", "EUR", "USD", "GBP", "JPY", "HKD", "SGD"})


@dataclass
class ErpState:
    """What the ERP holds; every operation goes through one lock (the server is threaded)."""

    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    reservations: dict[str, dict[str, Any]] = field(default_factory=dict)
    shipments: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    """(operation, RequestId) of every call that reached the service, faults included."""
    _answers: dict[tuple[str, str], str] = field(default_factory=dict)
    """(operation, RequestId) -> the id answered: keys are per operation, so one event may
    create an order and a reservation under the same RequestId."""
    _failures: dict[str, int] = field(default_factory=dict)
    _delays: dict[str, float] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    lock: threading.RLock = field(default_factory=threading.RLock)
    on_change: Callable[[str, dict[str, Any]], None] | None = None
    """Called (under the lock, so in order) with "create" or "update" and the changed account."""
    account_writes: int = 0
    """Accounts written through SOAP (a resent RequestId counts once)."""
    idle_writes: int = 0
    """Of those, writes that changed nothing: echoes written back."""
    edits: int = 0
    """Changes the ERP's own users made (``edit``)."""
    _touched: dict[str, float] = field(default_factory=dict)
    """AccountNo -> when it last changed (monotonic)."""

    def edit(self, account_no: str, **changes: Any) -> None:
        """An ERP user changes an account; the ERP reports it like every change."""
        with self.lock:
            self.accounts[account_no].update(changes)
            self.edits += 1
            self._changed("update", account_no)

    def quiet(self, seconds: float) -> list[str]:
        """Accounts (by AccountNo) that have not changed for ``seconds``."""
        since = time.monotonic() - seconds
        with self.lock:
            return [no for no in self.accounts if self._touched.get(no, 0.0) <= since]

    def _changed(self, action: str, account_no: str) -> None:
        account = self.accounts[account_no]
        account["ChangedAt"] = datetime.now(UTC).isoformat(timespec="microseconds")
        self._touched[account_no] = time.monotonic()
        if self.on_change is not None:
            self.on_change(action, _jsonable(account))

    def wrote(self, account_no: str, changes: dict[str, Any], created: bool) -> None:
        """A SOAP operation wrote ``changes`` into an account (made it, when ``created``)."""
        account = self.accounts[account_no]
        self.account_writes += 1
        self.idle_writes += not created and all(account.get(k) == v for k, v in changes.items())
        account.update(changes)
        self._changed("create" if created else "update", account_no)

    def fail_next(self, operation: str, times: int) -> None:
        """Answer the next ``times`` calls of ``operation`` with a Server fault."""
        with self.lock:
            self._failures[operation] = times

    def delay_next(self, operation: str, seconds: float) -> None:
        """Let the next call of ``operation`` do its work, then answer after ``seconds``."""
        with self.lock:
            self._delays[operation] = seconds

    def ship(self, order_id: str, carrier: str = "DEMO-POST") -> dict[str, Any]:
        """Record a shipment of an order, as the warehouse would; ReportShipments lists it."""
        with self.lock:
            order = self.orders[order_id]
            shipment = {"ShipmentId": f"SH-{next(self._ids):06d}", "OrderId": order_id,
                        "OrderNo": order["OrderNo"], "Carrier": carrier,
                        "ShippedAt": datetime.now(UTC)}
            self.shipments.append(shipment)
            return shipment

    def snapshot(self) -> dict[str, Any]:
        """A JSON-friendly copy for ``/state`` and the demo."""
        with self.lock:
            return _jsonable({"accounts": self.accounts, "orders": self.orders,
                              "reservations": self.reservations, "shipments": self.shipments,
                              "calls": [list(call) for call in self.calls]})

    def handle(
        self, operation: str, request_id: str, create: Callable[[str], str]
    ) -> tuple[str, bool]:
        """Run ``create(new_id)`` once per RequestId; a resend gets the first id back.

        Returns the id and whether this call created it.
        """
        result = self._handle(operation, request_id, create)
        with self.lock:
            delay = self._delays.pop(operation, 0.0)
        time.sleep(delay)  # the work is done and kept; only the answer is late
        return result

    def _handle(
        self, operation: str, request_id: str, create: Callable[[str], str]
    ) -> tuple[str, bool]:
        with self.lock:
            self.calls.append((operation, request_id))
            left = self._failures.get(operation, 0)
            if left > 0:
                self._failures[operation] = left - 1
                raise Fault("Server.Unavailable", "the ERP is busy; try again later")
            known = self._answers.get((operation, request_id))
            if known is not None:
                return known, False
            prefix = {"UpsertAccount": "AC", "CreateSalesOrder": "SO",
                      "ReserveInventory": "RS"}.get(operation)  # None: it changes, creates nothing
            new_id = create(f"{prefix}-{next(self._ids):06d}" if prefix else "")
            self._answers[(operation, request_id)] = new_id
            return new_id, True


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _required(model: Any, **facets: Any) -> Any:
    """A mandatory (minOccurs=1, not nillable) element type, so spyne's schema rejects omissions."""
    return model(min_occurs=1, nillable=False, **facets)


class OrderLine(ComplexModel):
    __namespace__ = NAMESPACE
    Sku = _required(Unicode, max_len=40)
    Quantity = _required(Integer, ge=1)
    UnitPrice = SpyneDecimal(ge=0)


class ReservationLine(ComplexModel):
    __namespace__ = NAMESPACE
    Sku = _required(Unicode, max_len=40)
    Quantity = _required(Integer, ge=1)


class Result(ComplexModel):
    """Every write answers the id it made (or made before, for a resend) and whether it is new."""

    __namespace__ = NAMESPACE
    Id = Unicode
    Created = Boolean


class Shipment(ComplexModel):
    __namespace__ = NAMESPACE
    ShipmentId = Unicode
    OrderId = Unicode
    OrderNo = Unicode
    Carrier = Unicode
    ShippedAt = DateTime


def _client_fault(code: str, message: str, **detail: str) -> Fault:
    return Fault(f"Client.{code}", message, detail=detail or None)


class ErpService(ServiceBase):
    """The operations; ``ctx.app.state`` is the ErpState of this application."""

    @rpc(_required(Unicode), _required(Unicode), Unicode, Unicode(max_len=2), Unicode,
         _returns=Result)
    def UpsertAccount(ctx, RequestId, AccountNo, Name, Country, Email):  # type: ignore[no-untyped-def]
        state: ErpState = ctx.app.state
        updated: list[bool] = []

        def create(new_id: str) -> str:
            existing = state.accounts.get(AccountNo)
            updated.append(existing is not None)
            written = {"Name": Name, "Country": Country, "Email": Email}
            if existing is None:  # the ERP's own fields are empty until its users fill them
                state.accounts[AccountNo] = {"AccountId": new_id, "AccountNo": AccountNo,
                                             **written, "CreditLimit": None,
                                             "PaymentTerms": None}
            state.wrote(AccountNo, written, created=existing is None)
            return str(state.accounts[AccountNo]["AccountId"])

        account_id, created = state.handle("UpsertAccount", RequestId, create)
        return Result(Id=account_id, Created=created and not any(updated))

    @rpc(_required(Unicode), _required(Unicode), Unicode, Unicode(max_len=2), Unicode,
         _returns=Result)
    def UpdateAccount(ctx, RequestId, AccountId, Name, Country, Email):  # type: ignore[no-untyped-def]
        """Change the given fields of the account the ERP numbered ``AccountId``.

        The caller addresses the account by the id the ERP assigned (what a ``capture`` stored),
        not by its own key; fields left out keep their values; an unknown id is a Client fault.
        """
        state: ErpState = ctx.app.state

        def update(_new_id: str) -> str:
            found = [a for a in state.accounts.values() if a["AccountId"] == AccountId]
            if not found:
                raise _client_fault("UnknownAccount", f"no account {AccountId!r}",
                                    field="AccountId")
            changes = {"Name": Name, "Country": Country, "Email": Email}
            state.wrote(found[0]["AccountNo"], {key: value for key, value in changes.items()
                                                if value is not None}, created=False)
            return str(AccountId)

        account_id, _ = state.handle("UpdateAccount", RequestId, update)
        return Result(Id=account_id, Created=False)

    @rpc(_required(Unicode), _required(Unicode), _required(Unicode), _required(Unicode, max_len=3),
         DateTime, Array(OrderLine), _returns=Result)
    def CreateSalesOrder(  # type: ignore[no-untyped-def]
        ctx, RequestId, OrderNo, AccountNo, Currency, OrderDate, Lines
    ):
        state: ErpState = ctx.app.state

        def create(new_id: str) -> str:
            if Currency not in CURRENCIES:
                raise _client_fault("UnknownCurrency", f"currency {Currency!r} is not accepted",
                                    field="Currency", accepted=",".join(sorted(CURRENCIES)))
            lines = list(Lines or [])
            if not lines:
                raise _client_fault("EmptyOrder", "a sales order needs at least one line",
                                    field="Lines")
            state.orders[new_id] = {
                "OrderId": new_id, "OrderNo": OrderNo, "AccountNo": AccountNo,
                "Currency": Currency, "OrderDate": OrderDate, "RequestId": RequestId,
                "Lines": [{"Sku": line.Sku, "Quantity": line.Quantity,
                           "UnitPrice": line.UnitPrice} for line in lines],
            }
            return new_id

        order_id, created = state.handle("CreateSalesOrder", RequestId, create)
        return Result(Id=order_id, Created=created)

    @rpc(_required(Unicode), _required(Unicode), Array(ReservationLine), _returns=Result)
    def ReserveInventory(ctx, RequestId, OrderNo, Lines):  # type: ignore[no-untyped-def]
        state: ErpState = ctx.app.state

        def create(new_id: str) -> str:
            state.reservations[new_id] = {
                "ReservationId": new_id, "OrderNo": OrderNo, "RequestId": RequestId,
                "Lines": [{"Sku": line.Sku, "Quantity": line.Quantity} for line in Lines or []],
            }
            return new_id

        reservation_id, created = state.handle("ReserveInventory", RequestId, create)
        return Result(Id=reservation_id, Created=created)

    @rpc(DateTime, _returns=Array(Shipment))
    def ReportShipments(ctx, Since):  # type: ignore[no-untyped-def]
        state: ErpState = ctx.app.state
        with state.lock:
            found: Iterable[dict[str, Any]] = [
                s for s in state.shipments if Since is None or s["ShippedAt"] > Since
            ]
            return [Shipment(**shipment) for shipment in found]


def _application(state: ErpState) -> Application:
    app = Application([ErpService], tns=NAMESPACE, name="DemoErp",
                      in_protocol=Soap11(validator="lxml"), out_protocol=Soap11())
    app.state = state
    return app


def build_wsgi_app(state: ErpState) -> WsgiApplication:
    """The spyne WSGI application (WSDL at ``?wsdl``) bound to ``state``."""
    return WsgiApplication(_application(state))


def generate_wsdl(address: str) -> bytes:
    """The WSDL spyne publishes at ``?wsdl``, with ``address`` as the service location.

    The outbound adapter loads WSDLs from local files only, so the demo writes this to a file
    (``silobridge demo erp --write-wsdl``) instead of letting anyone fetch ``?wsdl`` at run time.
    It is produced by calling the WSGI app in-process, so it is what the server serves (pretty
    printed, schema declarations sorted).
    """
    from urllib.parse import urlsplit
    from wsgiref.util import setup_testing_defaults

    parts = urlsplit(address)
    environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "QUERY_STRING": "wsdl",
                               "PATH_INFO": parts.path, "HTTP_HOST": parts.netloc,
                               "wsgi.url_scheme": parts.scheme}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(build_wsgi_app(ErpState())(
        environ, lambda code, _headers, *_exc: status.append(code)))
    if not status or not status[0].startswith("200"):
        raise RuntimeError(f"spyne did not produce a WSDL ({status})")
    root = etree.fromstring(body)
    for schema in root.iter("{http://www.w3.org/2001/XMLSchema}schema"):
        # spyne emits top-level types in hash order; sorted, the file is stable between runs
        schema[:] = sorted(schema, key=lambda node: (
            etree.QName(node).localname not in ("import", "include"),
            etree.QName(node).localname, node.get("name", "")))
    pretty: bytes = etree.tostring(root, pretty_print=True, xml_declaration=True,
                                   encoding="UTF-8")
    return pretty
