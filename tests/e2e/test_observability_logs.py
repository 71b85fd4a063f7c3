"""No personal data in the logs: real Shopify and Dynamics 365 webhooks through the whole daemon.

The daemon runs as a subprocess with JSON logs at debug level; the vendor samples go through
signed webhooks, routes and REST targets, including the paths that tend to leak (a target that
refuses with 422 and echoes the request in its answer, a mapping that fails on the payload).
Every e-mail address, phone number, name, street, city, postcode, coordinate and card number in
the samples is derived from the samples themselves, then searched for in the captured output.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from starlette.requests import Request
from starlette.responses import Response

from tests.e2e.conftest import DaemonProcess
from tests.integration.helpers import wait_until
from tests.integration.rest_helpers import Peer, realworld

pytestmark = pytest.mark.e2e

SHOPIFY = "shopify-order-rest-fixture.json"
DYNAMICS = "dynamics365-webhook-RemoteExecutionContext-contact-update.json"
SHOPIFY_SECRET = "log-scan-shopify-secret"
DYNAMICS_KEY = "log-scan-dynamics-key"

PERSONAL_KEY = re.compile(
    r"(?i)^(e_?mail(address)?\d?|phone|telephone\d?|mobile_?phone|first_?name|last_?name|"
    r"full_?name|yomi\w*name|address\d?|address\d?_line\d?|street\d?|zip|postal_?code|city|"
    r"latitude|longitude|credit_card_number|card_?number|iban)$"
)
"""Keys whose values are personal data in CRM payloads (Dynamics has them as key/value pairs)."""
PERSON_OBJECTS = ("address", "customer", "contact")
"""Objects in which a plain ``name`` is a person's name (elsewhere it names products)."""


def personal_values(document: Any, parent: str = "") -> set[str]:
    """Every personal value in a vendor payload, found by key."""
    found: set[str] = set()
    if isinstance(document, list):
        for item in document:
            found |= personal_values(item, parent)
    elif isinstance(document, dict):
        key, value = document.get("key"), document.get("value")
        if isinstance(key, str) and isinstance(value, str) and PERSONAL_KEY.match(key):
            found.add(value)
        for name, item in document.items():
            personal = PERSONAL_KEY.match(name) or (
                name == "name" and any(word in parent for word in PERSON_OBJECTS))
            if personal and isinstance(item, str | int | float) and not isinstance(item, bool):
                found.add(str(item))
            found |= personal_values(item, name.lower())
    return {value for value in found if len(value) >= 4}


def _leaks(text: str, values: set[str]) -> dict[str, int]:
    leaks = {}
    for value in values:
        hits = len(re.findall(rf"(?<![\w@.-]){re.escape(value)}(?![\w@-])", text))
        if hits:
            leaks[value] = hits
    return leaks


async def _target(request: Request, body: bytes) -> Response:
    """Accepts, except on /refuse: 422 with the request echoed, as careless ERPs answer."""
    if request.url.path.endswith("/refuse"):
        return Response(b'{"error": "invalid record", "received": ' + body + b"}", 422,
                        media_type="application/json")
    return Response(b'{"ok": true}', 200, media_type="application/json")


@pytest.fixture
def peer() -> Iterator[Peer]:
    with Peer(_target) as server:
        yield server


def test_observability_logs_hold_no_personal_data_from_real_vendor_webhooks(
    prefix: str, daemon_process: Callable[..., DaemonProcess], peer: Peer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shopify, dynamics = realworld(SHOPIFY), realworld(DYNAMICS)
    values = personal_values(json.loads(shopify)) | personal_values(json.loads(dynamics))
    # Given the samples' personal data (the derivation must find the obvious ones)
    assert {"bob.norman@hostmail.com", "555-625-1199", "Chestnut Street 92", "Bob Norman",
            "XXXX-XXXX-XXXX-4242", "James Glynn (sample)"} <= values
    monkeypatch.setenv("LOGSCAN_SHOPIFY_SECRET", SHOPIFY_SECRET)
    monkeypatch.setenv("LOGSCAN_DYNAMICS_KEY", DYNAMICS_KEY)
    failing = tmp_path / "contact-fails.yaml"
    failing.write_text(yaml.safe_dump({
        "mapping": "contact-that-fails", "source": {"system": "d365"},
        "target": {"system": "erp"},
        "fields": {"name": {"from": "InputParameters[0].value.Attributes[2].value",
                            "map": {"Somebody Else": "x"}, "required": True}},
    }))

    def route(name: str, bind: str, path: str, **extra: Any) -> dict[str, Any]:
        return {"name": f"{prefix}-{name}", "bind": [bind], **extra,
                "target": {"type": "rest", "method": "POST", "url": f"{peer.url}{path}",
                           "timeout": 5}}

    daemon = daemon_process([
        route("shop", f"{prefix}.order.*", "/orders"),
        route("shop-refused", f"{prefix}.order.*", "/refuse"),
        route("d365", f"{prefix}.contact.*", "/contacts"),
        route("d365-fails", f"{prefix}.contact.*", "/never", mapping=str(failing)),
    ], inbound=[
        {"type": "rest", "name": f"{prefix}-shopify", "path": "/webhooks/shopify",
         "system": prefix, "auth": {"scheme": "shopify", "secret_env": "LOGSCAN_SHOPIFY_SECRET"},
         "derive": {"entity": {"value": "order"},
                    "action": {"header": "X-Shopify-Topic", "pattern": "/(\\w+)$",
                               "map": {"create": "created"}},
                    "subject": {"path": "order.id"}, "time": {"path": "order.updated_at"}}},
        {"type": "rest", "name": f"{prefix}-dynamics", "path": "/webhooks/dynamics",
         "system": prefix,
         "auth": {"scheme": "api_key", "query": "code", "header": None,
                  "secret_env": "LOGSCAN_DYNAMICS_KEY"},
         "derive": {"entity": {"path": "PrimaryEntityName"},
                    "action": {"path": "MessageName", "map": {"Update": "updated"}},
                    "subject": {"path": "PrimaryEntityId"}, "id": {"path": "OperationId"}}},
    ])
    ingress = yaml.safe_load(daemon.config.read_text())["ingress"]["port"]
    daemon.start("--log-level", "debug")
    daemon.wait_ready()
    base = f"http://127.0.0.1:{ingress}"  # ready includes "ingress listening"

    # When the vendors send their webhooks (and one with a wrong signature)
    signature = base64.b64encode(
        hmac.new(SHOPIFY_SECRET.encode(), shopify, hashlib.sha256).digest()).decode()
    shop_headers = {"Content-Type": "application/json", "X-Shopify-Topic": "orders/create",
                    "X-Shopify-Webhook-Id": f"{prefix}-1"}
    sent = httpx.post(f"{base}/webhooks/shopify", content=shopify, timeout=10,
                      headers={**shop_headers, "X-Shopify-Hmac-SHA256": signature})
    assert sent.status_code == 202, sent.text
    forged = httpx.post(f"{base}/webhooks/shopify", content=shopify, timeout=10,
                        headers={**shop_headers, "X-Shopify-Hmac-SHA256": "Zm9yZ2Vk"})
    assert forged.status_code == 401
    sent = httpx.post(f"{base}/webhooks/dynamics?code={DYNAMICS_KEY}", content=dynamics,
                      headers={"Content-Type": "application/json"}, timeout=10)
    assert sent.status_code == 202, sent.text

    # Then the data reached the targets, the refusal and the mapping failure were logged...
    assert wait_until(lambda: all(peer.calls(path) for path in ("/orders", "/contacts",
                                                                "/refuse")), 20)
    assert b"bob.norman@hostmail.com" in peer.calls("/orders")[0][3]
    assert b"James Glynn (sample)" in peer.calls("/contacts")[0][3]
    log = daemon.log
    assert wait_until(lambda: log.read_text().count('"dead-lettered"') >= 2, 20), log.read_text()
    # (read once the daemon stopped in order: every line it will ever write is there)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(line.get("level") == "debug" for line in lines), "debug level was not on"
    assert any(line.get("event") == "webhook rejected" for line in lines)
    # ...and not one personal value appears anywhere in the output (the search itself finds
    # them in what the targets received)
    assert len(_leaks(peer.calls("/orders")[0][3].decode(), values)) >= 10
    assert _leaks(text, values) == {}
