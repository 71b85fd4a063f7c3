"""Issue 12: store faults are transient, never permanent, and never silent (real RabbitMQ, real
PostgreSQL, a real full filesystem).

Events flow at 200/s through a route whose mapping looks up cross-references and whose
idempotency records are committed before each ack, while the store fails: PostgreSQL cut off
by a TCP proxy the test owns (the shared server is never stopped), or the SQLite file's
filesystem (a small tmpfs the test mounts) filled up. During the fault ``/readyz`` answers 503
with the store's reason; afterwards every event is delivered, none is lost or dead-lettered,
and the broker loop thread is alive and turning.

``SB_STORE_OUTAGE_SECONDS`` sets how long the store fails (default 10: the CI cost; the issue's
run is 30). Ten seconds is past everything the promise depends on: readiness turns false within
one probe and the store timeouts (2 s each), the route's retry tiers would be spent in 2.1 s
(a store fault treated as a delivery failure would dead-letter), and each waiting store call
is tried again several times, its backoff growing towards its 5 s cap.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from middleware.broker.topology import dlq_name, queue_name
from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon, Role
from middleware.envelope import Envelope
from tests.integration.helpers import counter, drain, queue_count, wait_until
from tests.integration.pg_helpers import ADMIN_DSN, pg_dsn
from tests.integration.store_helpers import publish_steadily
from tests.integration.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

__all__ = ["pg_dsn"]  # the fixture, re-exported for pytest

RATE = 200  # events per second
OUTAGE = float(os.environ.get("SB_STORE_OUTAGE_SECONDS", "10"))
AFTER = 5  # seconds the stream goes on after the store is back

MAPPING = """\
mapping: store-faults
fields:
  customer_no: {from: customer_no}
  account_id:
    from: customer_no
    lookup: {xref: crm.customer -> erp.account, on_missing: passthrough}
"""


@dataclass
class Outage:
    """What the test saw: readiness answers during the fault, and ids sent and delivered."""

    readiness: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)


def route_config(prefix: str, tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "m.yaml").write_text(MAPPING)
    return {
        "name": f"{prefix}-r", "bind": [f"{prefix}.customer.*"],
        "mapping": str(tmp_path / "m.yaml"),
        "target": {"type": "amqp", "exchange": f"{prefix}.out", "routing_key": "erp.account",
                   "queue": f"{prefix}.out"},
    }


def run_outage(
    amqp_url: str, prefix: str, loaded: LoadedConfig, *, total: int, fault_at: float,
    fault_for: float, fault: Callable[[], None], heal: Callable[[], None],
) -> Outage:
    """Run the daemon, publish ``total`` events at RATE, fault the store for ``fault_for`` s."""
    route = f"{prefix}-r"
    seen = Outage()
    dead_before = counter("silobridge_messages_total", route=route, target="amqp",
                          outcome="dead_lettered")
    errors_before = _store_errors()
    daemon = Daemon(loaded, Role.WORKER)
    daemon.start()
    try:
        assert wait_until(lambda: all(daemon.readiness().values()), 15)
        ready_url = f"http://127.0.0.1:{daemon.ops.port}/readyz"
        events = [Envelope.new(source="crm/test", type=f"{prefix}.customer.updated",
                               subject=f"C-{n % 100}", data={"customer_no": f"C-{n % 100}"})
                  for n in range(total)]
        publishing = threading.Thread(
            target=lambda: seen.sent.extend(publish_steadily(amqp_url, events, RATE)))
        publishing.start()
        # When the store fails for a while in the middle of the stream
        time.sleep(fault_at)
        fault()
        healed_at = time.monotonic() + fault_for
        while time.monotonic() < healed_at:
            answer = httpx.get(ready_url, timeout=5)
            seen.readiness.append((answer.status_code, answer.json()))
            time.sleep(0.5)
        heal()
        publishing.join(120)
        # Then everything arrives once the store works again
        assert wait_until(lambda: queue_count(amqp_url, f"{prefix}.out") >= total, 120), \
            f"{queue_count(amqp_url, f'{prefix}.out')} of {total} delivered"
        assert wait_until(lambda: daemon.workers[0].wait_idle(0), 30)
        assert wait_until(lambda: httpx.get(ready_url, timeout=5).status_code == 200, 30), \
            httpx.get(ready_url, timeout=5).json()
        # the broker loop never died or stalled, and no thread ended
        assert daemon.broker.thread.is_alive() and daemon.broker.turning()
        assert daemon.watchdog.check() is None
    finally:
        daemon.stop()
    seen.delivered = [props.message_id for props, _ in drain(amqp_url, f"{prefix}.out")]
    # nothing dead-lettered, nothing left in the route's queues
    assert queue_count(amqp_url, dlq_name(route)) == 0
    assert queue_count(amqp_url, queue_name(route)) == 0
    assert counter("silobridge_messages_total", route=route, target="amqp",
                   outcome="dead_lettered") == dead_before
    assert _store_errors() > errors_before
    return seen


def assert_outage_seen(seen: Outage, total: int, *reason_parts: str) -> None:
    assert len(seen.sent) == total
    lost = set(seen.sent) - set(seen.delivered)
    assert not lost, f"{len(lost)} events lost"
    failing = [body for status, body in seen.readiness if status == 503]
    assert failing, f"readiness never turned false: {seen.readiness[-3:]}"
    body = failing[-1]
    assert body["checks"]["store"] is False
    reason = body["reasons"]["store"]
    for part in reason_parts:
        assert part in reason, reason


def _store_errors() -> float:
    return sum(counter("silobridge_store_errors_total", store=store, operation=operation)
               for store, operation in (("idempotency", "record_many"), ("xref", "lookup"),
                                        ("store", "probe"), ("idempotency", "seen")))


def test_store_fault_postgres_cut_off_delays_events_and_loses_none(
    amqp_url: str, prefix: str, tmp_path: Path, pg_dsn: str,
    make_config: Callable[..., LoadedConfig],
) -> None:
    # Given the PostgreSQL store reached through a proxy this test owns
    upstream = urlsplit(ADMIN_DSN)
    with TcpProxy(upstream.hostname or "127.0.0.1", upstream.port or 5432) as proxy:
        dsn = pg_dsn.replace(f"@{upstream.netloc.split('@')[-1]}/",
                             f"@127.0.0.1:{proxy.port}/", 1)
        assert str(proxy.port) in dsn
        loaded = make_config([route_config(prefix, tmp_path)], store={
            "kind": "postgres", "dsn": dsn, "statement_timeout": 2, "connect_timeout": 2})
        # When it is cut off for a while as 200 events/s flow
        total = int(RATE * (5 + OUTAGE + AFTER))
        seen = run_outage(amqp_url, prefix, loaded, total=total, fault_at=5, fault_for=OUTAGE,
                          fault=proxy.cut, heal=proxy.restore)
    # Then readiness said why during the outage, and every event was delivered after it
    assert_outage_seen(seen, total, "store failing", "unreachable")


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs of this test's own (SQLite's WAL alone grows to 4 MiB), unmounted
    afterwards; mounting needs root."""
    mount = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs under CI: {done.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_store_fault_sqlite_on_a_full_filesystem_delays_events_and_loses_none(
    amqp_url: str, prefix: str, tmp_path: Path, small_tmpfs: Path,
    make_config: Callable[..., LoadedConfig],
) -> None:
    # Given the SQLite store on a small filesystem of its own
    loaded = make_config([route_config(prefix, tmp_path)],
                         store={"path": str(small_tmpfs / "store.db")})
    filler = small_tmpfs / "filler"

    def fill() -> None:
        descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)  # unbuffered
        try:
            with contextlib.suppress(OSError):
                while True:  # until ENOSPC: the database cannot grow any more
                    os.write(descriptor, b"\0" * 65536)
        finally:
            os.close(descriptor)

    # When the filesystem fills up for a while as 200 events/s flow, then space is freed
    total = int(RATE * (3 + OUTAGE + AFTER))
    seen = run_outage(amqp_url, prefix, loaded, total=total, fault_at=3, fault_for=OUTAGE,
                      fault=fill, heal=filler.unlink)
    # Then readiness said why while it was full, and every event was delivered after
    assert_outage_seen(seen, total, "store failing", "database or disk is full")
