"""Two-way sync on routes with enrich steps, end to end: real RabbitMQ, the worker daemon, its
SQLite store, and the CRM and ERP as one real HTTP peer on loopback (their APIs the enrich
steps call, their record endpoints the routes write). An ordered route keeps a subject's order
across a failed enrich call (the subject waits for the retried event); the echo of a write is
dropped before any enrich call; a genuine change still goes through the steps."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon
from tests.e2e.twoway_helpers import cleanup_routes, publish, update
from tests.integration.helpers import counter, wait_until
from tests.integration.rest_helpers import Peer, json_response

pytestmark = pytest.mark.integration


class Systems:
    """``GET /<system>/credit/<no>?seq=n`` answers a credit limit (503 for the subjects in
    ``busy``, once each); ``PUT /<system>/customers/<no>`` stores the record."""

    def __init__(self, busy: set[str]) -> None:
        self.busy = set(busy)
        self.lock = threading.Lock()
        self.gets: list[tuple[str, str, str]] = []  # (system, subject, seq)
        self.puts: list[tuple[str, dict[str, Any]]] = []  # (system, record)

    async def __call__(self, request: Request, body: bytes) -> Response:
        system, _kind, subject = request.url.path.strip("/").split("/")
        with self.lock:
            if request.method == "PUT":
                self.puts.append((system, json.loads(body)))
                return json_response({}, 200)
            self.gets.append((system, subject, request.query_params.get("seq", "")))
            if subject in self.busy:
                self.busy.discard(subject)
                return json_response({"error": "busy"}, 503)
        return json_response({"limit": 1000})

    def written(self, system: str) -> list[dict[str, Any]]:
        with self.lock:
            return [record for to, record in self.puts if to == system]


def _route(name: str, source: str, target: str, url: str, pair: str) -> dict[str, Any]:
    return {
        "name": name, "bind": [f"{source}.customer.*"],
        "enrich": [{"system": target, "get": f"/{target}/credit/{{envelope.subject}}"
                                              f"?seq={{payload.seq}}",
                    "select": "limit", "into": "credit"}],
        "target": {"type": "rest", "method": "PUT",
                   "url": f"{url}/{target}/customers/{{envelope.subject}}"},
        "sync": {"ordering": "subject", "hold_delay": 0.1,
                 "echo": {"pair": pair, "fields": ["name"]}},
    }


def test_twoway_enriched_routes_keep_order_across_a_failed_step_and_drop_echoes_uncalled(
    amqp_url: str, prefix: str, make_config: Callable[..., LoadedConfig],
    run_daemon: Callable[[LoadedConfig], Daemon],
) -> None:
    crm, erp = f"{prefix}crm", f"{prefix}erp"
    there, back = f"{prefix}-to-erp", f"{prefix}-to-crm"
    systems = Systems(busy={"C-1"})  # the ERP's API answers C-1's first GET with a 503
    with Peer(systems) as peer, cleanup_routes(amqp_url, [there, back], tiers=3):
        loaded = make_config(
            [_route(there, crm, erp, peer.url, back), _route(back, erp, crm, peer.url, there)],
            systems={name: {"type": "rest", "base_url": peer.url, "timeout": 2}
                     for name in (crm, erp)})
        run_daemon(loaded)
        # When: C-1's first update comes from the CRM, its enrich call fails and it waits in
        # a retry tier; meanwhile the second update of C-1 and one of C-2 come
        publish(amqp_url, f"{crm}.customer.updated", [update(crm, "C-1", 1, name="Ada 1")])
        assert wait_until(lambda: len(systems.gets) == 1, 10)
        publish(amqp_url, f"{crm}.customer.updated", [
            update(crm, "C-1", 2, name="Ada 2"), update(crm, "C-2", 1, name="Bo 1")])
        # Then: the ERP gets C-1 in order, each write enriched; C-2 is not held back
        assert wait_until(lambda: len(systems.written(erp)) == 3, 15)
        written = systems.written(erp)
        assert [r["seq"] for r in written if r["no"] == "C-1"] == [1, 2]
        assert all(r["credit"] == 1000 for r in written)
        assert written[0]["no"] == "C-2"
        # ... and C-1's second update called the ERP's API only once the first was applied:
        # held, it made no call (the failed call, the retried one, then the second's)
        assert [seq for system, no, seq in systems.gets if no == "C-1"] == ["1", "1", "2"]
        assert counter("silobridge_messages_total", route=there, target="rest",
                       outcome="held") >= 1
        # When: the ERP reports its write of C-1 back, then a genuine edit of C-1
        publish(amqp_url, f"{erp}.customer.updated", [update(erp, "C-1", 3, name="Ada 2")])
        assert wait_until(lambda: counter("silobridge_messages_total", route=back,
                                          target="rest", outcome="echo") == 1, 10)
        publish(amqp_url, f"{erp}.customer.updated", [update(erp, "C-1", 4, name="Ada 4")])
        # Then: the echo made no call to the CRM at all; the edit is enriched and written once
        assert wait_until(lambda: len(systems.written(crm)) == 1, 10)
        assert [r["name"] for r in systems.written(crm)] == ["Ada 4"]
        assert [seq for system, no, seq in systems.gets if system == crm] == ["4"]
