"""Issue 16, must-show 1 (CI size): per-subject order under failure, across replicas and a
SIGKILL, on real RabbitMQ, real PostgreSQL and a REST peer on loopback.

``SB_ORDER_SUBJECTS`` x ``SB_ORDER_UPDATES`` updates (default 20 x 10), interleaved, 30 % of the
target's answers a transient 503; three worker replicas, one SIGKILLed mid-run. The target
itself counts order violations (an update older than one it accepted for the subject): 0, and
it ends holding the last update of every subject.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e.replicas import PORTS, Replica
from tests.e2e.twoway_helpers import OrderedTarget, cleanup_routes, outcomes, publish, update
from tests.integration.helpers import wait_until
from tests.integration.pg_helpers import pg_dsn  # noqa: F401  (a fixture)
from tests.integration.rest_helpers import Peer

pytestmark = pytest.mark.e2e

SUBJECTS = int(os.environ.get("SB_ORDER_SUBJECTS", "20"))
UPDATES = int(os.environ.get("SB_ORDER_UPDATES", "10"))
TIERS = 5


def _config(tmp_path: Path, amqp_url: str, dsn: str, prefix: str, route: str, url: str,
            ordered: bool = True) -> Path:
    document = {
        "broker": {"url": amqp_url, "prefetch": 20}, **PORTS,
        "store": {"kind": "postgres", "dsn": dsn, "pool_size": 4},
        "retry": {"attempts": TIERS, "initial_delay": 0.2, "multiplier": 2},
        "shutdown_grace": 5,
        "routes": [{
            "name": route, "bind": [f"{prefix}crm.customer.*"],
            **({"sync": {"ordering": "subject", "stale": "drop", "hold_delay": 0.2,
                         "claim_ttl": 15}} if ordered else {}),
            "target": {"type": "rest", "method": "PUT", "timeout": 5, "concurrency": 8,
                       "url": f"{url}/api/customers/{{envelope.subject}}"},
        }],
    }
    config = tmp_path / "silobridge.yaml"
    config.write_text(yaml.safe_dump(document))
    return config


def _outcomes(worker: Replica, route: str, outcome: str) -> float:
    return outcomes([worker.ops_port], route, outcome)


def test_ordered_route_keeps_subject_order_through_retries_replicas_and_a_sigkill(
    amqp_url: str, prefix: str, pg_dsn: str, tmp_path: Path,  # noqa: F811
) -> None:
    route = f"{prefix}-ordered"
    target = OrderedTarget(failure_rate=0.3, max_failures=3)
    with cleanup_routes(amqp_url, [route], TIERS), Peer(target) as server:
        config = _config(tmp_path, amqp_url, pg_dsn, prefix, route, server.url)
        workers = [Replica(config, "worker", f"worker-{n}").start() for n in range(3)]
        try:
            for worker in workers:
                worker.wait_ready()
            # Given: updates interleaved across subjects, in order within each subject
            events = [update(f"{prefix}crm", f"C-{s}", seq)
                      for seq in range(UPDATES) for s in range(SUBJECTS)]
            started = time.monotonic()
            publish(amqp_url, f"{prefix}crm.customer.updated", events)
            # When: one worker is SIGKILLed mid-run
            assert wait_until(lambda: len(target.accepted) >= len(events) // 4, 120)
            workers[0].kill()
            # Then: every subject ends at its last update, and the target saw no violation
            last = UPDATES - 1
            assert wait_until(lambda: all(target.last.get(f"C-{s}") == last
                                          for s in range(SUBJECTS)), 180), target.last
            elapsed = time.monotonic() - started
            assert target.violations == []
            held = sum(_outcomes(w, route, "held") for w in workers[1:])
            stale = sum(_outcomes(w, route, "stale") for w in workers[1:])
            failed = sum(target.failures.values())
            print(f"\n{len(events)} updates in {elapsed:.1f}s: {len(target.accepted)} accepted "
                  f"writes, {failed} 503s, survivors: {held:.0f} held, {stale:.0f} stale")
            assert failed > len(events) * 0.1, "the run must have had transient failures"
            assert held > 0, "retries must have held later updates of their subjects"
            assert _outcomes(workers[1], route, "dead_lettered") == 0
        finally:
            for worker in workers:
                worker.kill()


def test_the_targets_order_check_sees_violations_of_an_unordered_route(
    amqp_url: str, prefix: str, pg_dsn: str, tmp_path: Path,  # noqa: F811
) -> None:
    """The control: the same failures without ``ordering: subject`` (and no stale check, since
    nothing is applied yet when the retried update comes back) reorder updates at the target,
    so the check above could fail."""
    route = f"{prefix}-unordered"
    target = OrderedTarget(failure_rate=0.3, max_failures=1)
    with cleanup_routes(amqp_url, [route], TIERS), Peer(target) as server:
        config = _config(tmp_path, amqp_url, pg_dsn, prefix, route, server.url, ordered=False)
        worker = Replica(config, "worker", "worker-0").start()
        try:
            worker.wait_ready()
            events = [update(f"{prefix}crm", f"C-{s}", seq) for seq in range(10)
                      for s in range(5)]
            publish(amqp_url, f"{prefix}crm.customer.updated", events)
            assert wait_until(lambda: len(target.accepted) == len(events), 60)
            assert target.violations, "retried updates overwrote newer ones"
        finally:
            worker.kill()
