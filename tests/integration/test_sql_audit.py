"""The audit table and the query of docs/warehouse.md, against the real PostgreSQL and broker.

On both databases: a CRM customer event that the ERP table refuses is dead-lettered, the
corrected one delivered; the audit table has a row for each, and the documented query follows
the customer from the CRM events to the ERP row (run from the docs, so the docs cannot drift
from what works).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from middleware.broker.ingest import publish_envelopes
from middleware.broker.rabbitmq.publisher import Publisher
from middleware.config.loader import LoadedConfig
from middleware.config.models import BrokerConfig
from middleware.daemon import Daemon
from middleware.envelope import Envelope
from tests.integration.helpers import wait_until
from tests.integration.sql_helpers import Warehouse, warehouse

__all__ = ["warehouse"]

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parents[2] / "docs" / "warehouse.md"

MAPPING = """\
mapping: crm-customer-to-erp-account
fields:
  account_no: customer_no
  name: name
  credit_limit: limit
"""


def _documented_query() -> str:
    text = DOCS.read_text(encoding="utf-8")
    found = re.search(r"<!-- tested by tests/integration/test_sql_audit.py[^>]*-->\n```sql\n"
                      r"(.*?)```", text, re.S)
    assert found, "docs/warehouse.md lost its tested query block"
    return found.group(1).strip().rstrip(";")


def _publish(amqp_url: str, envelopes: list[Envelope]) -> None:
    publisher = Publisher(BrokerConfig(url=amqp_url))
    assert publisher.start(wait=10)
    try:
        publish_envelopes(publisher, envelopes, timeout=30)
    finally:
        publisher.stop()


def test_audit_rows_and_the_documented_query_follow_one_customer(
    warehouse: Warehouse, amqp_url: str, prefix: str, tmp_path: Path,
    make_config: Callable[..., LoadedConfig], run_daemon: Callable[..., Daemon],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    accounts, audit_table = warehouse.table("erp_accounts"), warehouse.table("audit")
    monkeypatch.setenv("SB_TEST_AUDIT_DSN", warehouse.dsn)
    (tmp_path / "customer.yaml").write_text(MAPPING)
    route = {"name": "crm-customer-to-erp", "bind": [f"{prefix}.customer.*"],
             "mapping": "customer.yaml",
             "target": {"type": "sql", "dsn_env": "SB_TEST_AUDIT_DSN", "table": accounts,
                        "key": ["account_no"], "create": True,
                        "columns": {"account_no": "string", "name": "string",
                                    "credit_limit": "numeric"}}}
    loaded = make_config([route], audit={"type": "sql", "dsn_env": "SB_TEST_AUDIT_DSN",
                                         "table": audit_table, "batch": {"max_wait_ms": 20}})
    daemon = run_daemon(loaded)
    # Given a CRM event the ERP table refuses (a limit that is not a number), then a fix
    bad = Envelope.new(source="crm/salesforce", type=f"{prefix}.customer.updated",
                       subject="C-1001", id="crm-evt-1",
                       data={"customer_no": "C-1001", "name": "ACME", "limit": "lots"})
    good = Envelope.new(source="crm/salesforce", type=f"{prefix}.customer.updated",
                        subject="C-1001", id="crm-evt-2",
                        data={"customer_no": "C-1001", "name": "ACME GmbH", "limit": 5000})
    other = Envelope.new(source="crm/salesforce", type=f"{prefix}.customer.updated",
                         subject="C-2002", id="crm-evt-3",
                         data={"customer_no": "C-2002", "name": "Other", "limit": 1})
    _publish(amqp_url, [bad])
    assert wait_until(lambda: warehouse.query(
        f"SELECT count(*) FROM {audit_table} WHERE outcome = 'dead_lettered'") == [(1,)], 20)
    _publish(amqp_url, [good, other])
    assert wait_until(lambda: warehouse.query(
        f"SELECT count(*) FROM {audit_table} WHERE outcome = 'delivered'") == [(2,)], 20)
    daemon.stop()
    # Then the audit has one row per outcome, without payload values
    audit = warehouse.query(
        "SELECT envelope_id, route, outcome, stage, source, event_type, subject, data "
        f"FROM {audit_table} ORDER BY recorded_at")
    assert sorted((r[0], r[2]) for r in audit) == [
        ("crm-evt-1", "dead_lettered"), ("crm-evt-2", "delivered"), ("crm-evt-3", "delivered")]
    assert audit[0][3] == "deliver" and audit[0][4] == "crm/salesforce"
    assert {r[1] for r in audit} == {"crm-customer-to-erp"}
    assert all(r[7] is None for r in audit)
    # And the documented query follows C-1001 from both CRM events to the ERP row
    query = _documented_query().replace("silobridge_audit", audit_table)
    followed = warehouse.query(query.replace("erp_accounts", accounts))
    assert [(r[3], r[5]) for r in followed] == [("crm-evt-1", "dead_lettered"),
                                                ("crm-evt-2", "delivered")]
    dead, delivered = followed
    assert dead[6] and "lots" not in dead[6] and dead[7] is None  # a reason, no ERP row
    assert delivered[7:10] == ("C-1001", "ACME GmbH", "crm-customer-to-erp-account")
    assert delivered[10] and delivered[11] is not None
