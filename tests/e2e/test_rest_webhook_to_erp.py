"""End to end with the daemon as a subprocess: a signed CRM webhook -> route -> mapping -> the
REST target on a real ERP stand-in, which receives exactly one call per event.

Also shown on the way: the id the ERP returns is captured into the xref store and used by the
mapping for the next event of the same customer; a resent webhook is not published again; a
permanent refusal (422) lands in the DLQ with the status and the ERP's answer, without retries.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from starlette.requests import Request
from starlette.responses import Response

from middleware.broker import dlq
from middleware.broker.topology import dlq_name
from middleware.config.models import BrokerConfig
from tests.e2e.conftest import DaemonProcess
from tests.integration.helpers import wait_until, waiting
from tests.integration.rest_helpers import Peer, hmac_hex, json_response

pytestmark = pytest.mark.e2e

MAPPING = Path(__file__).resolve().parents[2] / "mappings" / "crm-erp" / "customer-to-account.yaml"
SECRET = "e2e-webhook-secret"
CUSTOMERS = 20


def _customer(n: int, **changes: Any) -> dict[str, Any]:
    return {"customer_no": f"C-{2000 + n}", "name": f"Kunde {n} GmbH", "country": "Germany",
            "currency": "eur", "tier": "gold", "status": "active", **changes}


async def _erp(request: Request, body: bytes) -> Response:
    """Creates or updates an account; refuses customers named 'Invalid' with 422."""
    payload = json.loads(body)
    if payload["name"] == "Invalid":
        return json_response({"error": "name rejected by ERP validation"}, 422)
    return json_response({"account_id": "A-" + payload["client_code"].rsplit("-", 1)[1]}, 201)


def test_rest_webhook_to_mapping_to_rest_target_one_call_per_event(
    amqp_url: str, prefix: str, daemon_process: Callable[..., DaemonProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not MAPPING.is_file():
        pytest.skip(f"{MAPPING} not present")
    monkeypatch.setenv("E2E_WEBHOOK_SECRET", SECRET)
    route = f"{prefix}-accounts"
    with Peer(_erp) as erp:
        daemon = daemon_process([{
            "name": route, "bind": [f"{prefix}.customer.*"], "mapping": str(MAPPING),
            "target": {"type": "rest", "method": "PUT", "timeout": 5, "concurrency": 4,
                       "url": f"{erp.url}/api/accounts/{{envelope.subject}}"},
        }], inbound=[{
            "type": "rest", "name": f"{prefix}-crm", "path": "/webhooks/crm", "system": prefix,
            "source": "crm/e2e",
            "auth": {"scheme": "hmac", "header": "X-Signature", "secret_env": "E2E_WEBHOOK_SECRET"},
            "dedupe": {"header": "X-Request-Id"},
            "derive": {"entity": {"value": "customer"}, "action": {"header": "X-Event"},
                       "subject": {"path": "customer_no"}},
        }])
        ingress = yaml.safe_load(daemon.config.read_text())["ingress"]["port"]
        daemon.start()
        daemon.wait_ready()  # ready includes "ingress listening"
        hook = f"http://127.0.0.1:{ingress}/webhooks/crm"

        def send(request_id: str, event: str, body: Any) -> httpx.Response:
            raw = json.dumps(body).encode()
            return httpx.post(hook, content=raw, timeout=10, headers={
                "Content-Type": "application/json", "X-Request-Id": f"{prefix}-{request_id}",
                "X-Event": event, "X-Signature": hmac_hex(SECRET, raw)})

        # When the CRM sends 20 new customers in batches of two, and resends one batch
        for n in range(0, CUSTOMERS, 2):
            answer = send(f"r{n}", "created", [_customer(n), _customer(n + 1)])
            assert answer.status_code == 202, answer.text
        assert send("r0", "created", [_customer(0), _customer(1)]).status_code == 200
        # Then the ERP receives each customer exactly once, mapped, keyed by the envelope id
        assert wait_until(lambda: len(erp.calls("/api/accounts/C-2019")) == 1
                          and len(erp.requests) >= CUSTOMERS, 30)
        # (counted once a sentinel customer sent behind them reached the ERP with nothing in
        # flight and no copy parked in a retry tier: a duplicate would be dispatched ahead of it)
        assert send("sentinel", "created", _customer(90)).status_code == 202
        idle = f'silobridge_in_flight{{route="{route}"}} 0.0'
        assert wait_until(lambda: bool(erp.calls("/api/accounts/C-2090"))
                          and idle in daemon.metrics(), 30)
        assert waiting(amqp_url, route, 2) == {}
        calls = Counter(url for _, url, _, _ in erp.requests if not url.endswith("/C-2090"))
        assert sorted(calls) == sorted(f"/api/accounts/C-{2000 + n}" for n in range(CUSTOMERS))
        assert set(calls.values()) == {1}
        method, _, headers, body = erp.calls("/api/accounts/C-2000")[0]
        account = json.loads(body)
        assert method == "PUT" and headers["idempotency-key"] == f"{prefix}-r0#0"
        assert account["client_code"] == "CRM-C-2000" and account["country_code"] == "DE"
        assert account["currency_code"] == "EUR" and "account_id" not in account

        # When the customer changes, the mapping finds the ERP id captured from the answer
        assert send("u1", "updated", _customer(0, name="Kunde 0 AG")).status_code == 202
        assert wait_until(lambda: len(erp.calls("/api/accounts/C-2000")) == 2, 15)
        update = json.loads(erp.calls("/api/accounts/C-2000")[1][3])
        assert update["account_id"] == "A-2000" and update["name"] == "Kunde 0 AG"

        # When the ERP refuses a customer for good, it is dead-lettered after one call
        assert send("bad", "created", _customer(99, name="Invalid")).status_code == 202
        broker = BrokerConfig(url=amqp_url)
        assert wait_until(lambda: len(dlq.browse(broker, dlq_name(route))) == 1, 15)
        [letter] = dlq.browse(broker, dlq_name(route))
        assert letter.headers["x-sb-detail-status"] == "422"
        assert "name rejected by ERP validation" in letter.headers["x-sb-detail-body"]
        assert letter.reason.startswith("permanent")
        assert len(erp.calls("/api/accounts/C-2099")) == 1
