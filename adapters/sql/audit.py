"""The audit table: one row per outcome of every message of every route, the warehouse's view.

``record`` is called where the worker settles a message (possibly on the broker loop), so it
only queues; parsing the envelope and writing run on the sink's own thread, in batches. A
database that is down holds rows back (retried with backoff) until the queue limit, beyond
which rows are dropped and counted (``silobridge_audit_rows_total{result="dropped"}``): the
audit must never stop deliveries. Payload values are stored only with ``include_payload``.
"""

from __future__ import annotations

import threading
from typing import Any

import orjson
import structlog

from adapters.sql.batcher import Batcher
from adapters.sql.config import AuditConfig, ColumnType
from adapters.sql.dialects import Connection, Dialect, dialect_for
from adapters.sql.table import ensure_table
from middleware import headers, metrics
from middleware.adapter import AdapterContext
from middleware.audit import OutcomeRecord
from middleware.errors import DeliveryError
from middleware.secrets import require_secret

__all__ = ["AUDIT_COLUMNS", "SqlAudit"]

log = structlog.get_logger(__name__)

AUDIT_COLUMNS: dict[str, ColumnType] = {
    "recorded_at": "timestamp",
    "route": "string",
    "outcome": "string",
    "envelope_id": "string",
    "event_type": "string",
    "source": "string",
    "subject": "string",
    "event_time": "timestamp",
    "correlation_id": "string",
    "causation_id": "string",
    "stage": "string",
    "error": "string",
    "reason": "text",
    "attempts": "integer",
    "data": "json",
}
"""The audit table's columns; docs/warehouse.md explains each."""

_BACKOFF = (0.5, 1.0, 2.0, 5.0)


class SqlAudit:
    """Writes outcome records to a table; see the module docstring."""

    def __init__(self, config: AuditConfig) -> None:
        self._config = config
        self._dialect: Dialect | None = None
        self._connection: Connection | None = None
        self._sql = ""
        self._batcher: Batcher[OutcomeRecord] = Batcher(
            "sql-audit", config.batch, self._write, limit=config.queue_limit)
        self._closing = threading.Event()
        self._written = metrics.AUDIT_ROWS.labels("written")
        self._dropped = metrics.AUDIT_ROWS.labels("dropped")

    def start(self, context: AdapterContext) -> None:
        config = self._config
        dialect = dialect_for(require_secret(config, "dsn", "audit"), "audit.dsn")
        self._dialect = dialect
        try:
            self._connection = dialect.connect(config.connect_timeout, config.statement_timeout)
        except Exception as exc:  # say which database, in silobridge's words
            raise dialect.classify(exc, "cannot connect to the audit database") from exc
        ensure_table(self._connection, dialect, config.schema_name, config.table,
                     AUDIT_COLUMNS, [], create=True, where="audit.table")
        self._sql = dialect.insert_sql(dialect.table_ref(config.schema_name, config.table),
                                       list(AUDIT_COLUMNS), 1)
        self._batcher.start()
        log.info("audit table ready", table=config.table, database=dialect.name)

    def record(self, record: OutcomeRecord) -> None:
        if not self._batcher.submit(record):
            self._dropped.inc()

    def close(self) -> None:
        self._closing.set()
        self._batcher.close()
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # -- the sink's thread ------------------------------------------------------------------

    def _write(self, records: list[OutcomeRecord]) -> None:
        rows = [self._row(record) for record in records]
        for attempt in range(len(_BACKOFF) + 1):
            try:
                self._insert(rows)
            except DeliveryError as error:
                if not error.retryable or self._closing.is_set() or attempt == len(_BACKOFF):
                    log.error("audit rows dropped", rows=len(rows), error=str(error))
                    self._dropped.inc(len(rows))
                    return
                log.warning("audit table unavailable; retrying", error=str(error))
                self._closing.wait(_BACKOFF[attempt])
            else:
                self._written.inc(len(rows))
                return

    def _insert(self, rows: list[list[Any]]) -> None:
        dialect = self._dialect
        assert dialect is not None
        config = self._config
        try:
            if self._connection is None:
                self._connection = dialect.connect(config.connect_timeout,
                                                   config.statement_timeout)
            cursor = self._connection.cursor()
            try:
                cursor.executemany(self._sql, rows)
            finally:
                cursor.close()
            self._connection.commit()
        except Exception as exc:
            if self._connection is not None:
                try:
                    self._connection.close()
                except Exception:
                    log.debug("closing a broken audit connection failed", exc_info=True)
                self._connection = None
            raise dialect.classify(exc, f"audit table {config.table}") from exc

    def _row(self, record: OutcomeRecord) -> list[Any]:
        """Column values of one record; a body that is no CloudEvent still gets its row."""
        dialect = self._dialect
        assert dialect is not None
        try:
            event = orjson.loads(record.body)
        except orjson.JSONDecodeError:
            event = None
        if not isinstance(event, dict):
            event = {}
        failure = record.failure or {}

        def text(value: Any) -> str | None:
            return None if value is None else str(value)[:255]

        try:
            event_time = dialect.value("timestamp", event.get("time"))
        except ValueError:
            event_time = None
        data = event.get("data") if self._config.include_payload else None
        return [
            dialect.value("timestamp", record.at), record.route, record.outcome.value,
            text(event.get("id")), text(event.get("type")), text(event.get("source")),
            text(event.get("subject")), event_time, text(event.get("correlationid")),
            text(event.get("causationid")), text(failure.get(headers.STAGE)),
            text(failure.get(headers.ERROR)),
            None if failure.get(headers.REASON) is None else str(failure[headers.REASON]),
            _int(failure.get(headers.ATTEMPTS)),
            None if data is None else dialect.json_value(data),
        ]


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(str(value))
    except ValueError:
        return None
