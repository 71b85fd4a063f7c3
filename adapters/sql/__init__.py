"""SQL adapter: land mapped records in PostgreSQL or MariaDB/MySQL tables, with lineage.

Outbound only: ``routes[*].target`` with ``type: sql`` upserts records by key in batches; the
top-level ``audit`` section with ``type: sql`` writes one row per message outcome of every route.
See docs/warehouse.md.

Only the configs are imported here: every daemon loads every registered adapter package to
know its configs, and the database drivers add 9.9 MiB to each process (measured after
``import middleware.daemon``). The builders import them when a config uses SQL.
"""

from adapters.sql.config import AuditConfig, SqlTargetConfig
from middleware.adapter import AdapterConfig, OutboundAdapter
from middleware.audit import AuditSink
from middleware.plugins import AdapterSpec, register

__all__ = ["AuditConfig", "SqlTargetConfig"]


def _target(config: AdapterConfig) -> OutboundAdapter:
    from adapters.sql.outbound import SqlTarget

    assert isinstance(config, SqlTargetConfig)
    return SqlTarget(config)


def _audit(config: AdapterConfig) -> AuditSink:
    from adapters.sql.audit import SqlAudit

    assert isinstance(config, AuditConfig)
    return SqlAudit(config)


register(AdapterSpec("sql", outbound_config=SqlTargetConfig, outbound=_target,
                     audit_config=AuditConfig, audit=_audit))
