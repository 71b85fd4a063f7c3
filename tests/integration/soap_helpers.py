"""Helpers for the SOAP adapter tests: the demo ERP, targets started from config, samples."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from adapters.soap.config import SoapTargetConfig
from adapters.soap.outbound import SoapTarget
from middleware.adapter import AdapterContext
from middleware.config.models import BrokerConfig, StoreConfig
from middleware.stores import open_stores
from silobridge_demo.erp_server import DemoErpServer

ROOT = Path(__file__).resolve().parents[2]
# beside the checkout (/work/main -> /work/shared) or beside a worktree's parent
# (/work/wt/<name> -> /work/shared)
REALWORLD = next((path for path in (ROOT / ".." / "shared" / "realworld",
                                    ROOT / ".." / ".." / "shared" / "realworld")
                  if path.is_dir()), ROOT / ".." / "shared" / "realworld")
ERP_WSDL = ROOT / "mappings" / "examples" / "soap-erp" / "demo-erp.wsdl"


def realworld(relative: str) -> Path:
    """A vendor artefact, byte for byte; the test is skipped where the files are absent."""
    path = REALWORLD / relative
    if not path.is_file():
        pytest.skip(f"real-world artefact {path} not present")
    return path


@contextmanager
def running_erp() -> Iterator[DemoErpServer]:
    """The demo ERP on a free loopback port, stopped afterwards."""
    server = DemoErpServer(port=0).start()
    try:
        yield server
    finally:
        server.stop()


def start_target(tmp_path: Path, **config: Any) -> SoapTarget:
    """A started SoapTarget (close it after use); relative paths resolve against the repo."""
    target = SoapTarget(SoapTargetConfig.model_validate({"type": "soap", **config}))
    stores = open_stores(StoreConfig(path=str(tmp_path / "store.db")))
    target.start(AdapterContext(None, BrokerConfig(), stores, ROOT))  # type: ignore[arg-type]
    return target


def order(request_id: str | None = None, currency: str = "EUR") -> dict[str, Any]:
    """CreateSalesOrder arguments as a mapping would produce them."""
    payload: dict[str, Any] = {
        "OrderNo": "CRM-O-1", "AccountNo": "A-77", "Currency": currency,
        "Lines": {"OrderLine": [{"Sku": "SKU-1", "Quantity": 2, "UnitPrice": "9.50"}]},
    }
    if request_id is not None:
        payload["RequestId"] = request_id
    return payload


class CuttableProxy:
    """A loopback TCP proxy to the broker that a test can cut and restore.

    Cutting it is a real connection loss for whoever connects through it, and for nobody else
    using the broker (other tests keep running).
    """

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._open = True
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if not self._open:
                    client.close()
                    continue
                upstream = socket.create_connection(self._upstream)
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self._lock:
            self._open = False
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def restore(self) -> None:
        with self._lock:
            self._open = True

    def close(self) -> None:
        self.cut()
        self._listener.close()


@contextmanager
def broker_proxy(amqp_url: str) -> Iterator[tuple[CuttableProxy, str]]:
    """A CuttableProxy to the broker at ``amqp_url`` and the AMQP URL that goes through it."""
    parts = urlsplit(amqp_url)
    proxy = CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    try:
        yield proxy, urlunsplit(parts._replace(netloc=f"{parts.username}:{parts.password}"
                                                       f"@127.0.0.1:{proxy.port}"))
    finally:
        proxy.close()
