"""SQL adapter: land mapped records in PostgreSQL or MariaDB/MySQL tables, with lineage.

Outbound only: ``routes[*].target`` with ``type: sql`` upserts records by key in batches; the
top-level ``audit`` section with ``type: sql`` writes one row per message outcome of every route.
See docs/warehouse.md.
"""

from adapters.sql.audit import SqlAudit
from adapters.sql.config import AuditConfig, SqlTargetConfig
from adapters.sql.outbound import SqlTarget
from middleware.adapter import AdapterConfig
from middleware.plugins import AdapterSpec, register

__all__ = ["AuditConfig", "SqlAudit", "SqlTarget", "SqlTargetConfig"]


def _target(config: AdapterConfig) -> SqlTarget:
    assert isinstance(config, SqlTargetConfig)
    return SqlTarget(config)


def _audit(config: AdapterConfig) -> SqlAudit:
    assert isinstance(config, AuditConfig)
    return SqlAudit(config)


register(AdapterSpec("sql", outbound_config=SqlTargetConfig, outbound=_target,
                     audit_config=AuditConfig, audit=_audit))
