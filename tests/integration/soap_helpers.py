"""Helpers for the SOAP adapter tests: the demo ERP, targets started from config, samples."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from adapters.soap.config import SoapTargetConfig
from adapters.soap.demo_server import DemoErpServer
from adapters.soap.outbound import SoapTarget
from middleware.adapter import AdapterContext
from middleware.config.models import BrokerConfig, StoreConfig
from middleware.stores import open_stores

ROOT = Path(__file__).resolve().parents[2]
REALWORLD = ROOT / ".." / "shared" / "realworld"
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
