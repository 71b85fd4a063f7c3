"""Replicas on one config and the real PostgreSQL store: ingress and workers as processes.

1. Three workers and two ingress processes; signed webhooks sent alternately to both ingress
   ports; one worker and one ingress SIGKILLed mid-stream and started again. Every accepted
   event (202, or 200 for a resend of an accepted one) reaches the REST target, which dedupes on
   ``Idempotency-Key``: no effect twice; raw duplicate calls are counted and each carries the
   key of its first call. ``SB_REPLICA_EVENTS`` sets the count (default 3,000: the CI cost on
   two cores; 20,000 is recorded in bench/RESULTS.md).
2. A customer synced by one set of processes, then every process replaced by new ones: the next
   update goes to the same ERP account (no second create); a cross-reference one worker wrote is
   used by the other worker at once.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pika
import pytest
import yaml
from starlette.requests import Request
from starlette.responses import Response

from middleware.broker.topology import dlq_name, queue_name, retry_name
from tests.e2e.replicas import PORTS, Replica
from tests.integration.helpers import wait_until, waiting
from tests.integration.pg_helpers import pg_dsn  # noqa: F401  (a fixture)
from tests.integration.rest_helpers import Peer, hmac_hex, json_response

pytestmark = pytest.mark.e2e

MAPPING = Path(__file__).resolve().parents[2] / "mappings" / "crm-erp" / "customer-to-account.yaml"
SECRET = "replica-webhook-secret"
EVENTS = int(os.environ.get("SB_REPLICA_EVENTS", "3000"))
SENDERS = 8


class Erp:
    """Accounts by customer; dedupes on Idempotency-Key: a repeated key repeats the answer and
    changes nothing. ``calls`` keeps every raw call (key, customer, had an account id)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str, bool]] = []
        self.effects: dict[str, str] = {}  # key -> account
        self.creates: Counter[str] = Counter()

    async def __call__(self, request: Request, body: bytes) -> Response:
        key = request.headers["idempotency-key"]
        account = json.loads(body)
        customer = account["client_code"].removeprefix("CRM-")
        with self.lock:
            self.calls.append((key, customer, "account_id" in account))
            if key not in self.effects:
                if "account_id" not in account:
                    self.creates[customer] += 1
                self.effects[key] = account.get("account_id") or f"A-{customer[2:]}"
            answer = self.effects[key]
        return json_response({"account_id": answer}, 201)


def _customer(n: int, **changes: Any) -> dict[str, Any]:
    return {"customer_no": f"C-{n}", "name": f"Kunde {n} GmbH", "country": "Germany",
            "currency": "eur", "tier": "gold", "status": "active", **changes}


@pytest.fixture
def route(amqp_url: str, prefix: str) -> Iterator[str]:
    name = f"{prefix}-accounts"
    yield name
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    for queue in (queue_name(name), dlq_name(name), *(retry_name(name, n) for n in (1, 2))):
        channel.queue_delete(queue)
    connection.close()


def _config(tmp_path: Path, amqp_url: str, dsn: str, prefix: str, route: str, erp: str,
            prefetch: int) -> Path:
    if not MAPPING.is_file():
        pytest.skip(f"{MAPPING} not present")
    document = {
        "broker": {"url": amqp_url, "prefetch": prefetch, "publish_timeout": 2}, **PORTS,
        "store": {"kind": "postgres", "dsn": dsn, "pool_size": 4},
        "retry": {"attempts": 2, "initial_delay": 0.5, "multiplier": 2},
        "shutdown_grace": 10,
        "routes": [{
            "name": route, "bind": [f"{prefix}.customer.*"], "mapping": str(MAPPING),
            "target": {"type": "rest", "method": "PUT", "timeout": 10, "concurrency": 8,
                       "url": f"{erp}/api/accounts/{{envelope.subject}}"},
        }],
        "inbound": [{
            "type": "rest", "name": f"{prefix}-crm", "path": "/webhooks/crm", "system": prefix,
            "source": "crm/e2e",
            "auth": {"scheme": "hmac", "header": "X-Signature",
                     "secret_env": "REPLICA_WEBHOOK_SECRET"},
            "dedupe": {"header": "X-Request-Id"},
            "derive": {"entity": {"value": "customer"}, "action": {"header": "X-Event"},
                       "subject": {"path": "customer_no"}},
        }],
    }
    config = tmp_path / "silobridge.yaml"
    config.write_text(yaml.safe_dump(document))
    return config


class Sender:
    """Signed webhooks, alternately to each ingress; a refused connection or a 503 is retried
    (on the other ingress, after Retry-After), as a webhook sender does."""

    def __init__(self, ingresses: list[Replica], prefix: str) -> None:
        self.ingresses = ingresses
        self.prefix = prefix
        self.accepted: dict[str, int] = {}  # request id -> final status
        self.retries = 0
        self.lock = threading.Lock()

    def send(self, client: httpx.Client, n: int, event: str, body: dict[str, Any],
             request_id: str, deadline: float = 60) -> int:
        raw = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "X-Request-Id": request_id,
                   "X-Event": event, "X-Signature": hmac_hex(SECRET, raw)}
        give_up = time.monotonic() + deadline
        for attempt in itertools.count():
            ingress = self.ingresses[(n + attempt) % len(self.ingresses)]
            try:
                answer = client.post(f"{ingress.url}/webhooks/crm", content=raw,
                                     headers=headers, timeout=10)
                if answer.status_code in (200, 202):
                    with self.lock:
                        self.accepted[request_id] = answer.status_code
                    return answer.status_code
                assert answer.status_code == 503, answer.text
                pause = min(float(answer.headers.get("retry-after", "1")), 1.0)
            except httpx.TransportError:
                pause = 0.05
            with self.lock:
                self.retries += 1
            assert time.monotonic() < give_up, f"{request_id} not accepted within {deadline}s"
            time.sleep(pause)
        raise AssertionError("unreachable")


def _idle(worker: Replica, route: str) -> bool:
    """Whether a worker has no message of the route in flight (its own metric)."""
    metrics = httpx.get(f"http://127.0.0.1:{worker.ops_port}/metrics", timeout=5).text
    return f'silobridge_in_flight{{route="{route}"}} 0.0' in metrics


def test_replicas_deliver_every_accepted_webhook_through_kills_without_duplicate_effects(
    amqp_url: str, prefix: str, pg_dsn: str, tmp_path: Path, route: str,  # noqa: F811
) -> None:
    erp = Erp()
    with Peer(erp) as server:
        config = _config(tmp_path, amqp_url, pg_dsn, prefix, route, server.url, prefetch=200)
        env = {"REPLICA_WEBHOOK_SECRET": SECRET}
        workers = [Replica(config, "worker", f"worker-{n}", **env).start() for n in range(3)]
        ingresses = [Replica(config, "ingress", f"ingress-{n}", **env).start() for n in range(2)]
        try:
            for replica in (*workers, *ingresses):
                replica.wait_ready()
            sender = Sender(ingresses, prefix)
            numbers = iter(range(EVENTS))
            numbers_lock = threading.Lock()
            errors: list[BaseException] = []

            def send_all() -> None:
                with httpx.Client() as client:
                    while True:
                        with numbers_lock:
                            n = next(numbers, None)
                        if n is None:
                            return
                        try:
                            sender.send(client, n, "created", _customer(n), f"{prefix}-{n}")
                        except BaseException as exc:  # reported by the main thread
                            errors.append(exc)
                            return

            started = time.monotonic()
            threads = [threading.Thread(target=send_all) for _ in range(SENDERS)]
            for thread in threads:
                thread.start()
            # When one worker and one ingress are SIGKILLed mid-stream and started again
            assert wait_until(lambda: len(sender.accepted) >= EVENTS // 3, 300)
            workers[0].kill()
            ingresses[0].kill()
            time.sleep(1)
            workers[0].start()
            ingresses[0].start()
            for thread in threads:
                thread.join()
            sent = time.monotonic() - started
            assert not errors, errors[0]
            # Then every accepted event reaches the target
            keys = set(sender.accepted)  # a one-object webhook's event id is its request id
            assert len(keys) == EVENTS
            assert wait_until(lambda: keys <= erp.effects.keys(), 300), \
                f"{len(keys - erp.effects.keys())} accepted events never reached the target"
            delivered = time.monotonic() - started
            # (redeliveries are counted once the route's queues are drained and no worker has
            # a message in flight, and then the workers are stopped in order: no call can come)
            assert wait_until(lambda: not waiting(amqp_url, route, 2)
                              and all(_idle(worker, route) for worker in workers), 120)
            assert [worker.stop() for worker in workers] == [0] * len(workers)
            assert waiting(amqp_url, route, 2) == {}
            with erp.lock:
                calls = list(erp.calls)
            per_key = Counter(key for key, _, _ in calls)
            duplicates = sum(count - 1 for count in per_key.values())
            print(f"\n{EVENTS} events: sent in {sent:.1f}s, all delivered after "
                  f"{delivered:.1f}s; {sender.retries} sender retries, "
                  f"{sum(1 for s in sender.accepted.values() if s == 200)} answered 200 "
                  f"(resend of an accepted one); {len(calls)} target calls, {duplicates} raw "
                  f"duplicate calls (same Idempotency-Key), 0 duplicate effects")
            # And no effect twice: one effect per key, only the keys that were sent
            assert per_key.keys() == keys
            assert set(erp.creates.values()) == {1} and len(erp.creates) == EVENTS
            for key, customer, _ in calls:  # a duplicate call carries its event's key
                assert key == f"{prefix}-{customer[2:]}"
        finally:
            for replica in (*workers, *ingresses):
                replica.kill()


def test_replicas_replaced_keep_the_links_and_share_them_at_once(
    amqp_url: str, prefix: str, pg_dsn: str, tmp_path: Path, route: str,  # noqa: F811
) -> None:
    erp = Erp()
    customers = 10
    with Peer(erp) as server:
        # prefetch 1: the two workers take turns, so creates and updates spread over both
        config = _config(tmp_path, amqp_url, pg_dsn, prefix, route, server.url, prefetch=1)
        env = {"REPLICA_WEBHOOK_SECRET": SECRET}

        def start_set(generation: int) -> list[Replica]:
            replicas = [Replica(config, "ingress", f"g{generation}-ingress", **env).start(),
                        *(Replica(config, "worker", f"g{generation}-worker-{n}", **env).start()
                          for n in range(2))]
            for replica in replicas:
                replica.wait_ready()
            return replicas

        first = start_set(1)
        try:
            sender = Sender(first[:1], prefix)
            with httpx.Client() as client:
                # Given customers created through the first set of processes
                for n in range(customers):
                    sender.send(client, n, "created", _customer(n), f"{prefix}-c{n}")
                assert wait_until(lambda: len(erp.creates) == customers, 60)
                # When each is updated right away, by whichever worker takes it
                for n in range(customers):
                    sender.send(client, n, "updated", _customer(n, name=f"Neu {n}"),
                                f"{prefix}-u{n}")
                assert wait_until(lambda: len(erp.effects) == 2 * customers, 60)
            # Then every update carried the account id the other replica's capture stored
            with erp.lock:
                updates = [c for c in erp.calls if c[0] == f"{prefix}-u{c[1][2:]}"]
            assert len(updates) == customers and all(has_id for _, _, has_id in updates)
        finally:
            for replica in first:
                replica.kill()  # every process replaced, none drained
        second = start_set(2)
        try:
            sender = Sender(second[:1], prefix)
            with httpx.Client() as client:
                for n in range(customers):
                    sender.send(client, n, "updated", _customer(n, name=f"Neuer {n}"),
                                f"{prefix}-v{n}")
            assert wait_until(lambda: len(erp.effects) == 3 * customers, 60)
            with erp.lock:
                later = [c for c in erp.calls if c[0] == f"{prefix}-v{c[1][2:]}"]
            # the new processes send each update to the same account: no second create
            assert len(later) == customers and all(has_id for _, _, has_id in later)
            assert erp.creates == Counter({f"C-{n}": 1 for n in range(customers)})
            assert {erp.effects[k] for k, _, _ in later} == {f"A-{n}" for n in range(customers)}
        finally:
            for replica in second:
                replica.kill()
