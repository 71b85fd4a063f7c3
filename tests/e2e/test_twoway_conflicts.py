"""Issue 16, must-show 3: concurrent edits of the same records in both systems converge, field
by field, to what each conflict rule says (real RabbitMQ, PostgreSQL, two emitting peers).

Three record sets, one per rule, each with its own pair of routes: ``latest-wins`` (the ERP
edit is the later one for even records, the CRM edit for odd ones), ``system-wins: crm``, and
``fields`` (the CRM owns ``name``, the ERP owns ``phone``). Every record is edited in both
systems at about the same time; both systems report every write back as a change event.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.replicas import PORTS, Replica
from tests.e2e.twoway_helpers import EmittingPeer, cleanup_routes, outcomes
from tests.integration.helpers import wait_until
from tests.integration.pg_helpers import pg_dsn  # noqa: F401  (a fixture)
from tests.integration.rest_helpers import Peer

pytestmark = pytest.mark.e2e

RECORDS = 8
RULES: dict[str, dict[str, dict[str, Any]]] = {
    # entity -> (route to the ERP's conflict section, route to the CRM's)
    "lw": {"erp": {"rule": "latest-wins"}, "crm": {"rule": "latest-wins"}},
    "sw": {"erp": {"rule": "system-wins", "wins": "{prefix}crm"},
           "crm": {"rule": "system-wins", "wins": "{prefix}crm"}},
    "fo": {"erp": {"rule": "fields", "owned_by_target": ["phone"]},
           "crm": {"rule": "fields", "owned_by_target": ["name"]}},
}
ECHO_FIELDS = {"lw": {"erp": ["name", "phone"], "crm": ["name", "phone"]},
               "sw": {"erp": ["name", "phone"], "crm": ["name", "phone"]},
               "fo": {"erp": ["name"], "crm": ["phone"]}}


def _routes(prefix: str, crm_url: str, erp_url: str) -> list[dict[str, Any]]:
    routes = []
    for entity, sides in RULES.items():
        to_erp, to_crm = f"{prefix}-{entity}-to-erp", f"{prefix}-{entity}-to-crm"
        for name, pair, source, target_url, side in (
                (to_erp, to_crm, "crm", erp_url, "erp"), (to_crm, to_erp, "erp", crm_url, "crm")):
            routes.append({
                "name": name, "bind": [f"{prefix}{source}.{entity}.*"],
                "sync": {"echo": {"pair": pair, "fields": ECHO_FIELDS[entity][side]},
                         "conflict": {**{k: v.format(prefix=prefix) if isinstance(v, str)
                                         else v for k, v in sides[side].items()},
                                      "window": 60}},
                "target": {"type": "rest", "method": "PUT", "timeout": 5,
                           "url": f"{target_url}/api/{{envelope.subject}}"}})
    return routes


def _expected(entity: str, n: int) -> tuple[str, str]:
    crm, erp = (f"crm-name-{n}", f"crm-phone-{n}"), (f"erp-name-{n}", f"erp-phone-{n}")
    if entity == "lw":
        return erp if n % 2 == 0 else crm
    if entity == "sw":
        return crm
    return crm[0], erp[1]


def test_concurrent_edits_converge_field_by_field_under_each_rule(
    amqp_url: str, prefix: str, pg_dsn: str, tmp_path: Path,  # noqa: F811
) -> None:
    def entity(subject: str) -> str:
        return subject.split("-")[0]

    crm = EmittingPeer(amqp_url, f"{prefix}crm", entity)
    erp = EmittingPeer(amqp_url, f"{prefix}erp", entity)
    routes = _routes(prefix, "", "")
    with cleanup_routes(amqp_url, [r["name"] for r in routes], 2), Peer(crm) as crm_server, \
            Peer(erp) as erp_server:
        config = tmp_path / "silobridge.yaml"
        config.write_text(yaml.safe_dump({
            "broker": {"url": amqp_url, "prefetch": 20}, **PORTS,
            "store": {"kind": "postgres", "dsn": pg_dsn, "pool_size": 4},
            "retry": {"attempts": 2, "initial_delay": 0.2, "multiplier": 2},
            "shutdown_grace": 5,
            "routes": _routes(prefix, crm_server.url, erp_server.url)}))
        worker = Replica(config, "worker", "worker-0").start()
        try:
            worker.wait_ready()
            subjects = [(e, n, f"{e}-{n}") for e in RULES for n in range(RECORDS)]
            for _entity, _n, subject in subjects:
                for peer in (crm, erp):
                    peer.seed(subject, name="old", phone="old")
            # When: each record is edited in both systems, the later edit alternating
            for _e, n, subject in subjects:
                first, second = (crm, erp) if n % 2 == 0 else (erp, crm)
                for peer in (first, second):
                    side = "crm" if peer is crm else "erp"
                    peer.edit(subject, name=f"{side}-name-{n}", phone=f"{side}-phone-{n}")
                    time.sleep(0.002)  # distinct source times: the rule 'latest-wins' needs them

            def converged() -> bool:
                return all(crm.view(s, "name", "phone") == erp.view(s, "name", "phone")
                           == _expected(e, n) for e, n, s in subjects)

            # Then: both systems hold what the rule says, field by field
            assert wait_until(converged, 60), "; ".join(
                f"{s}: crm {crm.view(s, 'name', 'phone')} erp {erp.view(s, 'name', 'phone')}"
                for e, n, s in subjects if not crm.view(s, "name", "phone")
                == erp.view(s, "name", "phone") == _expected(e, n))
            resolved = outcomes([worker.ops_port], f"{prefix}-lw-to-erp", "conflict") + \
                outcomes([worker.ops_port], f"{prefix}-lw-to-crm", "conflict")
            assert resolved >= RECORDS // 2, "latest-wins dropped the older edit of each record"
            print(f"\nconverged: {len(subjects)} records; writes CRM {len(crm.writes)}, "
                  f"ERP {len(erp.writes)}")
        finally:
            worker.kill()
            crm.close()
            erp.close()
