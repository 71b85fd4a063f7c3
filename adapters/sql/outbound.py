"""SQL target: upsert mapped records into a table by key, in batches, with lineage columns.

``deliver`` converts the record to column values at once (a value the column cannot take is a
permanent error for that message alone) and queues it for a writer; each writer owns one
connection and one thread (``Batcher``) and writes a batch as one multi-row upsert in one
transaction, then completes every message's Future. A message is thus acked only after its row
is committed. Rows are spread over the writers by key, so two updates of one record never race.

When a batch fails permanently (a constraint, a value out of range) its rows are written again
one by one, so only the offending message is dead-lettered; a transient failure (connection
lost, deadlock, lock or statement timeout) fails the whole batch as retryable and the
connection is opened afresh for the next one. Within one batch a key that occurs twice keeps
its last row (an upsert cannot touch a row twice in one statement); both messages succeed.
"""

from __future__ import annotations

import threading
import zlib
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from adapters.sql.batcher import Batcher
from adapters.sql.config import SqlTargetConfig
from adapters.sql.dialects import Connection, Dialect, dialect_for
from adapters.sql.table import LINEAGE_COLUMNS, ensure_table
from middleware.adapter import AdapterContext, Delivered
from middleware.envelope import Envelope
from middleware.errors import DeliveryError
from middleware.lineage import Lineage
from middleware.secrets import require_secret

__all__ = ["SqlTarget"]

log = structlog.get_logger(__name__)

_WHERE = "routes.target"


@dataclass
class _Row:
    key: tuple[Any, ...]
    values: list[Any]
    future: Future[Delivered]


class SqlTarget:
    """One table of one database; see the module docstring for batching and errors."""

    def __init__(self, config: SqlTargetConfig) -> None:
        self._config = config
        self._dialect: Dialect | None = None
        self._writers: list[_Writer] = []
        self._fields = list(config.columns)
        self._key_index = [self._fields.index(k) for k in config.key]
        self._names = self._fields + (list(LINEAGE_COLUMNS) if config.lineage else [])
        self._label = f"sql {config.table}"

    def start(self, context: AdapterContext) -> None:
        config = self._config
        dialect = dialect_for(require_secret(config, "dsn", _WHERE), f"{_WHERE}.dsn")
        self._dialect = dialect
        self._label = f"{dialect.name} table {config.table}"
        columns = {**config.columns, **(LINEAGE_COLUMNS if config.lineage else {})}
        connection = self._connect(dialect)
        try:
            ensure_table(connection, dialect, config.schema_name, config.table, columns,
                         config.key, config.create, f"{_WHERE}.table")
        finally:
            connection.close()
        table = dialect.table_ref(config.schema_name, config.table)
        for n in range(config.writers):
            writer = _Writer(self, dialect, table, f"sql-{config.table}-{n}")
            writer.batcher.start()
            self._writers.append(writer)
        log.info("SQL target ready", table=config.table, database=dialect.name,
                 writers=config.writers, lineage=config.lineage)

    def _connect(self, dialect: Dialect) -> Connection:
        config = self._config
        try:
            return dialect.connect(config.connect_timeout, config.statement_timeout)
        except Exception as exc:
            raise dialect.classify(exc, f"cannot connect to {self._label}") from exc

    def deliver(self, envelope: Envelope, payload: Any) -> Future[Delivered]:
        return self.deliver_traced(envelope, payload, Lineage(route=""))

    def deliver_traced(
        self, envelope: Envelope, payload: Any, lineage: Lineage
    ) -> Future[Delivered]:
        assert self._dialect is not None, "start() must run before deliver()"
        future: Future[Delivered] = Future()
        try:
            values = self._values(payload)
        except DeliveryError as exc:
            future.set_exception(exc)
            return future
        if self._config.lineage:
            values += [envelope.id, envelope.source, envelope.type, envelope.subject,
                       self._dialect.value("timestamp", envelope.time), envelope.correlationid,
                       envelope.causationid, lineage.route or None, lineage.mapping,
                       lineage.mapping_version, None]  # delivered_at: set when written
        key = tuple(values[i] for i in self._key_index)
        writer = self._writers[zlib.crc32(repr(key).encode()) % len(self._writers)]
        writer.batcher.submit(_Row(key, values, future))
        return future

    def _values(self, payload: Any) -> list[Any]:
        """Column values in config order; DeliveryError (permanent) naming the field."""
        assert self._dialect is not None
        if not isinstance(payload, dict):
            raise DeliveryError(f"{self._label}: the mapped payload is a JSON "
                                f"{type(payload).__name__}; a row needs an object",
                                retryable=False, details={"error": "sql:payload"})
        unknown = sorted(set(payload) - set(self._config.columns))
        if unknown:
            raise DeliveryError(f"{self._label}: payload field(s) {', '.join(unknown)} have no "
                                f"column; add them to the target's 'columns' or drop them in "
                                f"the mapping", retryable=False,
                                details={"error": "sql:unknown_field"})
        values = []
        for name, kind in self._config.columns.items():
            try:
                values.append(self._dialect.value(kind, payload.get(name)))
            except ValueError as exc:
                raise DeliveryError(f"{self._label}: field {name!r} {exc}", retryable=False,
                                    details={"error": "sql:value"}) from None
        for name in self._config.key:
            if payload.get(name) is None:
                raise DeliveryError(f"{self._label}: key field {name!r} is missing or null",
                                    retryable=False, details={"error": "sql:key"})
        return values

    def close(self) -> None:
        """Write what is queued, then close the connections."""
        for writer in self._writers:
            writer.batcher.close()
            writer.disconnect()


class _Writer:
    """One connection and its batching thread."""

    def __init__(self, target: SqlTarget, dialect: Dialect, table: str, name: str) -> None:
        self._target = target
        self._dialect = dialect
        self._table = table
        self._connection: Connection | None = None
        self._lock = threading.Lock()  # close() runs on another thread
        self.batcher: Batcher[_Row] = Batcher(name, target._config.batch, self._write)

    def disconnect(self) -> None:
        with self._lock:
            if self._connection is not None:
                try:
                    self._connection.close()
                except Exception:  # already broken: nothing left to release
                    log.debug("closing a broken SQL connection failed", exc_info=True)
                self._connection = None

    def _write(self, rows: list[_Row]) -> None:
        try:
            self._write_batch(rows)
        except Exception as exc:  # never leave a message unsettled
            error = exc if isinstance(exc, DeliveryError) else self._dialect.classify(
                exc, self._target._label)
            for row in rows:
                if not row.future.done():
                    row.future.set_exception(error)

    def _write_batch(self, rows: list[_Row]) -> None:
        latest = {row.key: row for row in rows}  # the last row of a key wins, in order
        unique = list(latest.values())
        try:
            self._execute(unique)
        except DeliveryError as error:
            if error.retryable or len(unique) == 1:
                raise
            log.warning("batch refused; writing its rows one by one", rows=len(unique),
                        table=self._table, error=str(error))
            for row in unique:  # find the offending rows; the others are written
                try:
                    self._execute([row])
                except DeliveryError as single:
                    self._settle([r for r in rows if r.key == row.key], single)
                    if single.retryable:
                        raise
                else:
                    self._settle([r for r in rows if r.key == row.key], None)
            return
        self._settle(rows, None)

    def _settle(self, rows: list[_Row], error: DeliveryError | None) -> None:
        for row in rows:
            if row.future.done():
                continue
            if error is None:
                row.future.set_result(Delivered(details={"table": self._target._config.table}))
            else:
                row.future.set_exception(error)

    def _execute(self, rows: list[_Row]) -> None:
        """One upsert of ``rows`` in its own transaction; DeliveryError when it fails."""
        config = self._target._config
        names = self._target._names
        stamp = self._dialect.value("timestamp", datetime.now(UTC))
        params: list[Any] = []
        for row in rows:
            params += [*row.values[:-1], stamp] if config.lineage else row.values
        sql = self._dialect.upsert_sql(self._table, names, config.key, len(rows))
        with self._lock:
            if self._connection is None:
                self._connection = self._target._connect(self._dialect)
            connection = self._connection
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(sql, params)
            finally:
                cursor.close()
            connection.commit()
        except Exception as exc:
            error = self._dialect.classify(exc, self._target._label)
            if error.retryable:
                self.disconnect()  # a lost or timed-out connection is not reused
            else:
                try:
                    connection.rollback()
                except Exception:
                    self.disconnect()
            raise error from exc
