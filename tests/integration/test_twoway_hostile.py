"""Two-way sync against hostile input, end to end: real RabbitMQ, worker daemons sharing a real
PostgreSQL store, a real HTTP target on loopback.

- The same event fifty times at once (a publisher that resent it, a replay next to the
  original) is written once: a copy of an event whose earlier copy is being delivered waits
  instead of taking the claim its event already holds, and a later event of the subject is not
  overtaken by a straggling copy.
- A subject with a NUL character (which PostgreSQL text cannot hold) is dead-lettered at once,
  not retried as a store fault for ever.
- A claim whose release is lost (the store cut, the worker stopped) expires after
  ``claim_ttl``: the subject is held that long, not for ever.
- The store cut while updates flow through the batch admission: readiness turns false, the
  batch waits (nothing dead-lettered, nothing out of order), and all is written once it is
  back."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from starlette.requests import Request
from starlette.responses import Response

from middleware import headers as h
from middleware.broker.topology import dlq_name
from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon
from tests.e2e.twoway_helpers import OrderedTarget, cleanup_routes, publish, update
from tests.integration.helpers import counter, drain, queue_count, wait_until
from tests.integration.pg_helpers import ADMIN_DSN
from tests.integration.rest_helpers import Peer, json_response
from tests.integration.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration


class SlowTarget:
    """Takes ``delay`` seconds per write (copies sent at once overlap it) and records each
    write's update number."""

    def __init__(self, delay: float = 1.0) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.written: list[int] = []

    async def __call__(self, request: Request, body: bytes) -> Response:
        await asyncio.sleep(self.delay)
        with self.lock:
            self.written.append(int(json.loads(body)["seq"]))
        return json_response({}, 200)


def _route(route: str, prefix: str, url: str) -> dict[str, Any]:
    return {"name": route, "bind": [f"{prefix}.customer.*"],
            "target": {"type": "rest", "method": "PUT",
                       "url": f"{url}/customers/{{envelope.subject}}"},
            "sync": {"ordering": "subject", "hold_delay": 0.1}}


def test_twoway_the_same_event_fifty_times_at_once_on_two_workers_is_written_once(
    amqp_url: str, prefix: str, pg_dsn: str, make_config: Callable[..., LoadedConfig],
    run_daemon: Callable[[LoadedConfig], Daemon],
) -> None:
    route = f"{prefix}-ordered"
    target = SlowTarget()
    with Peer(target) as peer, cleanup_routes(amqp_url, [route], tiers=3):
        loaded = make_config([_route(route, prefix, peer.url)],
                             store={"kind": "postgres", "dsn": pg_dsn, "pool_size": 4})
        run_daemon(loaded)
        run_daemon(loaded)
        # When: update 1 of C-1 arrives fifty times at once (one id), then update 2
        first, second = update(prefix, "C-1", 1), update(prefix, "C-1", 2)
        publish(amqp_url, f"{prefix}.customer.updated", [first] * 50)
        publish(amqp_url, f"{prefix}.customer.updated", [second])

        def settled() -> float:
            return sum(counter("silobridge_messages_total", route=route, target="rest",
                               outcome=outcome) for outcome in ("delivered", "duplicate",
                                                                "stale"))

        assert wait_until(lambda: settled() == 51, 20), settled()
        # Then: update 1 was written once, and update 2 after it
        assert target.written == [1, 2]


def test_twoway_a_subject_with_a_nul_character_is_dead_lettered_not_retried_for_ever(
    amqp_url: str, prefix: str, pg_dsn: str, make_config: Callable[..., LoadedConfig],
    run_daemon: Callable[[LoadedConfig], Daemon],
) -> None:
    route = f"{prefix}-ordered"
    target = SlowTarget(delay=0.0)
    with Peer(target) as peer, cleanup_routes(amqp_url, [route], tiers=3):
        run_daemon(make_config([_route(route, prefix, peer.url)],
                               store={"kind": "postgres", "dsn": pg_dsn, "pool_size": 4}))
        publish(amqp_url, f"{prefix}.customer.updated",
                [update(prefix, "C-\x00", 1), update(prefix, "C-2", 2)])
        assert wait_until(lambda: queue_count(amqp_url, dlq_name(route)) == 1, 10)
        (letter,) = drain(amqp_url, dlq_name(route))
        assert "NUL character" in str(letter[0].headers[h.REASON])
        assert wait_until(lambda: target.written == [2], 5)


class FailingFirst:
    """Answers update 1 after ``delay`` s with a 400 (dead-lettered at once), the rest with 200;
    records the update numbers it was sent and those it accepted."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.sent: list[int] = []
        self.accepted: list[int] = []

    async def __call__(self, request: Request, body: bytes) -> Response:
        seq = int(json.loads(body)["seq"])
        self.sent.append(seq)
        if seq == 1:
            await asyncio.sleep(self.delay)
            return json_response({"error": "invalid"}, 400)
        self.accepted.append(seq)
        return json_response({}, 200)


def test_twoway_a_claim_whose_release_is_lost_in_a_store_cut_expires(
    amqp_url: str, prefix: str, pg_dsn: str, make_config: Callable[..., LoadedConfig],
    run_daemon: Callable[[LoadedConfig], Daemon],
) -> None:
    # Given: an ordered route on PostgreSQL behind a proxy the test owns (the shared server is
    # never stopped), claims of 5 s, and update 1 of C-1 claimed and being delivered
    route = f"{prefix}-ordered"
    target = FailingFirst(delay=1.0)
    upstream = urlsplit(ADMIN_DSN)
    with Peer(target) as peer, cleanup_routes(amqp_url, [route], tiers=0), \
            TcpProxy(upstream.hostname or "127.0.0.1", upstream.port or 5432) as proxy:
        dsn = pg_dsn.replace(f"@{upstream.netloc.split('@')[-1]}/",
                             f"@127.0.0.1:{proxy.port}/", 1)
        config = _route(route, prefix, peer.url) | {"retry": {"attempts": 0}}
        config["sync"] |= {"claim_ttl": 5.0}
        loaded = make_config([config], shutdown_grace=0.5, store={
            "kind": "postgres", "dsn": dsn, "statement_timeout": 1, "connect_timeout": 1})
        first = run_daemon(loaded)
        publish(amqp_url, f"{prefix}.customer.updated", [update(prefix, "C-1", 1)])
        assert wait_until(lambda: target.sent == [1], 10)
        # When: the store is cut while it is delivered; the target refuses it, so it is
        # dead-lettered and its claim should be released, but the store is away; the worker
        # stops before the store is back
        proxy.cut()
        assert wait_until(lambda: queue_count(amqp_url, dlq_name(route)) == 1, 10)
        first.stop()
        proxy.restore()
        # Then: update 2, arriving at a new worker, waits for the orphaned claim to expire
        # (held, not written), and is written then: the subject is not held for ever
        second = run_daemon(loaded)
        publish(amqp_url, f"{prefix}.customer.updated", [update(prefix, "C-1", 2)])
        assert wait_until(lambda: target.accepted == [2], 10)
        assert counter("silobridge_messages_total", route=route, target="rest",
                       outcome="held") >= 1
        second.stop()  # while the proxy still passes (stopped behind a cut one, it took 11 s)


def test_twoway_a_store_cut_mid_stream_holds_the_batch_and_loses_nothing(
    amqp_url: str, prefix: str, pg_dsn: str, make_config: Callable[..., LoadedConfig],
    run_daemon: Callable[[LoadedConfig], Daemon],
) -> None:
    # Given: an ordered route on PostgreSQL behind a proxy the test owns, updates of 40
    # subjects flowing through the batch admission
    route = f"{prefix}-ordered"
    target = OrderedTarget(failure_rate=0.0, max_failures=0)
    upstream = urlsplit(ADMIN_DSN)
    subjects, updates = 40, 5
    with Peer(target) as peer, cleanup_routes(amqp_url, [route], tiers=3), \
            TcpProxy(upstream.hostname or "127.0.0.1", upstream.port or 5432) as proxy:
        dsn = pg_dsn.replace(f"@{upstream.netloc.split('@')[-1]}/",
                             f"@127.0.0.1:{proxy.port}/", 1)
        loaded = make_config([_route(route, prefix, peer.url)], store={
            "kind": "postgres", "dsn": dsn, "pool_size": 4, "statement_timeout": 1,
            "connect_timeout": 1})
        daemon = run_daemon(loaded)
        events = [update(prefix, f"C-{s}", seq) for seq in range(updates)
                  for s in range(subjects)]
        publish(amqp_url, f"{prefix}.customer.updated", events[:subjects])
        assert wait_until(lambda: len(target.accepted) >= subjects // 2, 10)
        # When: the store is cut while the rest arrive
        proxy.cut()
        publish(amqp_url, f"{prefix}.customer.updated", events[subjects:])
        # Then: readiness says so, and no update of the second wave is written without its
        # claim while the store is away
        assert wait_until(lambda: not daemon.readiness()["store"], 15)
        assert not wait_until(lambda: any(seq > 0 for _s, seq in target.accepted), 1.0)
        # ... and once it is back every subject ends at its last update, each in order
        proxy.restore()
        assert wait_until(lambda: all(target.last.get(f"C-{s}") == updates - 1
                                      for s in range(subjects)), 60), target.last
        assert wait_until(lambda: daemon.readiness()["store"], 15)
        assert target.violations == []
        assert queue_count(amqp_url, dlq_name(route)) == 0
