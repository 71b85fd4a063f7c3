"""End to end on loopback: a CRM order arrives as a REST webhook, is mapped and delivered as a
SOAP CreateSalesOrder and ReserveInventory to the demo ERP (its own process, spyne) through zeep;
the ERP's order id lands in the xref store; delivering the same event again creates nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from middleware.config.models import StoreConfig
from middleware.scrape import parse
from middleware.stores import open_stores
from tests.e2e.conftest import DaemonProcess, free_port
from tests.integration.helpers import wait_until

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "mappings" / "examples" / "soap-erp"
ORDER = json.loads((ROOT / "mappings" / "crm-erp" / "samples" / "crm-order-won.json").read_text())


@pytest.fixture
def erp_process(tmp_path: Path) -> Iterator[str]:
    """``silobridge demo erp`` as a subprocess; yields its base URL."""
    port = free_port()
    log = (tmp_path / "erp.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "middleware", "demo", "erp", "--port",
                                str(port)], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "erp.log").read_text()
            try:
                if httpx.get(f"{base}/state", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError("the demo ERP did not start")
        yield base
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def _route(name: str, prefix: str, mapping: str, operation: str, erp: str) -> dict[str, Any]:
    return {"name": f"{prefix}-{name}", "bind": [f"{prefix}.order.won"],
            "mapping": str(EXAMPLES / mapping),
            "target": {"type": "soap", "wsdl": str(EXAMPLES / "demo-erp.wsdl"),
                       "operation": operation, "address": f"{erp}/soap",
                       "idempotency": {"argument": "RequestId"}}}


def test_soap_e2e_crm_webhook_becomes_erp_order_and_reservation_once(
    daemon_process: Callable[..., DaemonProcess], erp_process: str, prefix: str, tmp_path: Path
) -> None:
    routes = [_route("so", prefix, "order-to-create-sales-order.yaml", "CreateSalesOrder",
                     erp_process),
              _route("ri", prefix, "order-to-reserve-inventory.yaml", "ReserveInventory",
                     erp_process)]
    webhook = {"type": "rest", "name": f"{prefix}-orders", "path": "/webhooks/crm/orders",
               "system": prefix, "derive": {
                   "entity": {"value": "order"}, "action": {"path": "stage"},
                   "subject": {"path": "opportunity_id"}, "id": {"header": "X-Event-Id"}}}
    daemon = daemon_process(routes, inbound=[webhook])
    daemon.start()
    daemon.wait_ready()
    ingress = yaml.safe_load(daemon.config.read_text())["ingress"]["port"]
    url = f"http://127.0.0.1:{ingress}/webhooks/crm/orders"

    def state() -> dict[str, Any]:
        answer: dict[str, Any] = httpx.get(f"{erp_process}/state").json()
        return answer

    # When the CRM sends the won order
    sent = httpx.post(url, json=ORDER, headers={"X-Event-Id": f"{prefix}-evt-1"}, timeout=10)
    assert sent.status_code == 202, sent.text
    # Then the ERP has one sales order and one reservation for it, made through zeep
    made = wait_until(lambda: len(state()["orders"]) == len(state()["reservations"]) == 1, 30)
    assert made, daemon.log.read_text()
    [order] = state()["orders"].values()
    assert order["OrderNo"] == ORDER["opportunity_id"]
    assert order["RequestId"] == f"{prefix}-evt-1"
    assert [line["Sku"] for line in order["Lines"]] == ["SKU-100", "SKU-200", "SKU-300"]
    # and the order id the ERP returned is in the xref store
    stores = open_stores(StoreConfig(path=str(tmp_path / "store.db")))
    try:
        assert wait_until(lambda: stores.xref.lookup("crm.order", ORDER["opportunity_id"],
                                                "erp.sales_order") == order["OrderId"], 10)
    finally:
        stores.close()

    # When the CRM sends the same event again, the ingress knows its id: nothing is published
    again = httpx.post(url, json=ORDER, headers={"X-Event-Id": f"{prefix}-evt-1"}, timeout=10)
    assert again.status_code == 200 and again.json()["status"] == "duplicate", again.text
    # and when the same envelope reaches the routes anyway (a resend through another path)
    resent = subprocess.run(
        [sys.executable, "-m", "middleware", "send", "-", "--type", f"{prefix}.order.won",
         "--id", f"{prefix}-evt-1", "--subject", ORDER["opportunity_id"],
         "-c", str(daemon.config)], input=json.dumps(ORDER).encode(), capture_output=True,
        timeout=60)
    assert resent.returncode == 0, resent.stderr

    def duplicates(route: str) -> float:
        return parse(daemon.metrics()).sum("silobridge_messages_total", route=route,
                                           outcome="duplicate")

    # Then both routes recognise it (the ERP, which would also dedupe on RequestId, is not
    # called at all: one call per operation)
    assert wait_until(lambda: duplicates(f"{prefix}-so") == duplicates(f"{prefix}-ri") == 1,
                      15), daemon.metrics()
    final = state()
    assert len(final["orders"]) == 1 and len(final["reservations"]) == 1
    operations = [call[0] for call in final["calls"]]
    assert operations.count("CreateSalesOrder") == operations.count("ReserveInventory") == 1
