"""Issue 16, must-show 2 (CI size): no echo between two systems that report every write.

A CRM and an ERP peer on loopback each emit a change event for every write they receive. Two
routes (CRM -> ERP, ERP -> CRM) on two worker replicas sharing the PostgreSQL store.
``SB_ECHO_CHANGES`` CRM changes (default 200) make exactly that many ERP writes and 0 writes
back into the CRM; ``SB_ECHO_EDITS`` genuine ERP edits (default 20), made during the run, each
reach the CRM exactly once and are not written back into the ERP.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e.replicas import PORTS, Replica
from tests.e2e.twoway_helpers import EmittingPeer, cleanup_routes, outcomes, publish, update
from tests.integration.helpers import wait_until
from tests.integration.pg_helpers import pg_dsn  # noqa: F401  (a fixture)
from tests.integration.rest_helpers import Peer

pytestmark = pytest.mark.e2e

CHANGES = int(os.environ.get("SB_ECHO_CHANGES", "200"))
EDITS = int(os.environ.get("SB_ECHO_EDITS", "20"))
SUBJECTS = 50


def _route(name: str, pair: str, bind: str, url: str) -> dict[str, object]:
    return {"name": name, "bind": [bind],
            "sync": {"echo": {"pair": pair, "fields": ["name", "phone"], "ttl": 300}},
            "target": {"type": "rest", "method": "PUT", "timeout": 5, "concurrency": 8,
                       "url": f"{url}/api/customers/{{envelope.subject}}"}}


def _outcomes(workers: list[Replica], route: str, outcome: str) -> float:
    return outcomes([w.ops_port for w in workers], route, outcome)


def test_paired_routes_write_each_change_once_and_never_echo_it_back(
    amqp_url: str, prefix: str, pg_dsn: str, tmp_path: Path,  # noqa: F811
) -> None:
    to_erp, to_crm = f"{prefix}-to-erp", f"{prefix}-to-crm"
    crm, erp = EmittingPeer(amqp_url, f"{prefix}crm"), EmittingPeer(amqp_url, f"{prefix}erp")
    with cleanup_routes(amqp_url, [to_erp, to_crm], 2), Peer(crm) as crm_server, \
            Peer(erp) as erp_server:
        config = tmp_path / "silobridge.yaml"
        config.write_text(yaml.safe_dump({
            "broker": {"url": amqp_url, "prefetch": 20}, **PORTS,
            "store": {"kind": "postgres", "dsn": pg_dsn, "pool_size": 4},
            "retry": {"attempts": 2, "initial_delay": 0.2, "multiplier": 2},
            "shutdown_grace": 5,
            "routes": [_route(to_erp, to_crm, f"{prefix}crm.customer.*", erp_server.url),
                       _route(to_crm, to_erp, f"{prefix}erp.customer.*", crm_server.url)],
        }))
        workers = [Replica(config, "worker", f"worker-{n}").start() for n in range(2)]
        try:
            for worker in workers:
                worker.wait_ready()
            # Given: CRM changes (distinct values each), published as the CRM reports them
            changes = [update(f"{prefix}crm", f"C-{n % SUBJECTS}", n, name=f"Name {n}",
                              phone=f"+49 {n:06d}") for n in range(CHANGES)]
            started = time.monotonic()
            publish(amqp_url, f"{prefix}crm.customer.updated", changes[: CHANGES // 2])
            # When: ERP users edit records meanwhile (genuine changes), then the rest arrives
            for n in range(EDITS):
                erp.edit(f"E-{n}", name=f"ERP edit {n}", phone=f"+33 {n:06d}")
            publish(amqp_url, f"{prefix}crm.customer.updated", changes[CHANGES // 2:])
            # Then: every ERP write was recognised as an echo, every CRM write of an ERP edit too
            assert wait_until(lambda: _outcomes(workers, to_crm, "echo") == CHANGES, 120), \
                (len(erp.writes), len(crm.writes), _outcomes(workers, to_crm, "echo"))
            assert wait_until(lambda: _outcomes(workers, to_erp, "echo") == EDITS, 60)
            elapsed = time.monotonic() - started
            assert len(erp.writes) == CHANGES
            assert sorted(w["name"] for w in crm.writes) == sorted(
                f"ERP edit {n}" for n in range(EDITS))
            assert _outcomes(workers, to_crm, "delivered") == EDITS
            assert _outcomes(workers, to_erp, "delivered") == CHANGES
            print(f"\n{CHANGES} CRM changes + {EDITS} ERP edits in {elapsed:.1f}s: "
                  f"{len(erp.writes)} ERP writes, {len(crm.writes)} CRM writes")
        finally:
            for worker in workers:
                worker.kill()
            crm.close()
            erp.close()
