"""A NAV-style Customer page web service, served by spyne, for read-before-update tests.

Dynamics NAV / Business Central page services (``urn:microsoft-dynamics-schemas/page/...``)
offer ``Read`` (by ``No``; an empty ``Read_Result`` when there is no such record) and ``Update``,
which takes the whole record with the ``Key`` a ``Read`` returned: the Key carries the record's
version (optimistic concurrency), and an ``Update`` with a missing or stale Key is refused with
a fault. So an integration cannot just send the new values; it must read the Key first. No page
WSDL is among the real-world artefacts (see their SOURCES.md), so this service follows that
contract (names, Read/Update shapes, the Key rule) and its WSDL is the one spyne generates.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
from spyne import Application, ComplexModel, ServiceBase, Unicode, rpc
from spyne.model.fault import Fault
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication

__all__ = ["NAMESPACE", "NavPage", "running_nav"]

NAMESPACE = "urn:microsoft-dynamics-schemas/page/customer"


class Customer(ComplexModel):
    __namespace__ = NAMESPACE
    Key = Unicode
    No = Unicode
    Name = Unicode
    Phone_No = Unicode


@dataclass
class NavPage:
    """The page's records; ``Key`` is '<version>;<No>' and changes with every update."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    slow: dict[str, float] = field(default_factory=dict)
    """Seconds a Read of these numbers takes (a service that hangs)."""
    busy: dict[str, int] = field(default_factory=dict)
    """Reads of these numbers answered with a Server fault, this many times."""
    traced: list[tuple[str | None, str | None]] = field(default_factory=list)
    """(traceparent, tracestate) HTTP headers of each Read, None where absent."""
    _versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, no: str, name: str) -> None:
        with self._lock:
            self.records[no] = {"Key": f"{next(self._versions)};{no}", "No": no, "Name": name,
                                "Phone_No": None}

    def read(self, no: str | None) -> dict[str, Any] | None:
        time.sleep(self.slow.get(no or "", 0.0))
        with self._lock:
            self.calls.append("Read")
            if self.busy.get(no or ""):
                self.busy[no or ""] -= 1
                raise Fault("Server", "The service is busy; try again later")
            record = self.records.get(no or "")
            return None if record is None else dict(record)

    def update(self, values: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.calls.append("Update")
            record = self.records.get(values.get("No") or "")
            if record is None:
                raise Fault("Client", f"The Customer does not exist. No='{values.get('No')}'")
            if values.get("Key") != record["Key"]:
                raise Fault("Client", "The Customer was changed after it was read: its Key is "
                            "stale or missing; read it again and send the new Key")
            for name, value in values.items():
                if name != "Key" and value is not None:
                    record[name] = value
            record["Key"] = f"{next(self._versions)};{record['No']}"
            return dict(record)


def _application(page: NavPage) -> WsgiApplication:
    def as_customer(record: dict[str, Any] | None) -> Customer | None:
        return None if record is None else Customer(**record)

    class CustomerPage(ServiceBase):
        @rpc(Unicode, _returns=Customer, _out_message_name="Read_Result",
             _out_variable_name="Customer")
        def Read(ctx: Any, No: str) -> Customer | None:
            environ = ctx.transport.req_env
            page.traced.append((environ.get("HTTP_TRACEPARENT"), environ.get("HTTP_TRACESTATE")))
            return as_customer(page.read(No))

        @rpc(Customer, _returns=Customer, _out_message_name="Update_Result",
             _out_variable_name="Customer")
        def Update(ctx: Any, Customer: Any) -> Customer | None:
            values = {name: getattr(Customer, name, None) for name in ("Key", "No", "Name",
                                                                       "Phone_No")}
            return as_customer(page.update(values))

    return WsgiApplication(Application([CustomerPage], tns=NAMESPACE, name="Customer_Service",
                                       in_protocol=Soap11(validator="lxml"),
                                       out_protocol=Soap11()))


class _Threading(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def running_nav(wsdl: Path) -> Iterator[tuple[NavPage, str]]:
    """The page on a free loopback port, its WSDL saved to ``wsdl``; yields (page, its URL)."""
    page = NavPage()
    server = make_server("127.0.0.1", 0, _application(page), server_class=_Threading,
                         handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="nav-page", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        wsdl.write_bytes(httpx.get(url + "?wsdl", timeout=5).content)
        yield page, url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
