"""The batcher, the lineage hand-over to targets, the audit guard and the mapping version."""

from __future__ import annotations

import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from adapters.sql.audit import AUDIT_COLUMNS, SqlAudit
from adapters.sql.batcher import Batcher
from adapters.sql.config import AuditConfig, BatchConfig
from adapters.sql.dialects import dialect_for
from middleware import headers
from middleware.adapter import AdapterContext, Delivered
from middleware.audit import OutcomeRecord, guarded
from middleware.envelope import Envelope
from middleware.lineage import Lineage, delivery_for
from middleware.mapping import load_mapping
from middleware.outcome import Outcome


def _collect(batch: BatchConfig, limit: int = 0) -> tuple[Batcher[int], list[list[int]]]:
    batches: list[list[int]] = []
    return Batcher("test-batcher", batch, batches.append, limit), batches


def test_batcher_writes_full_batches_of_max_rows_at_once() -> None:
    batcher, batches = _collect(BatchConfig(max_rows=10, max_wait_ms=5000))
    for n in range(25):
        assert batcher.submit(n)
    started = time.monotonic()
    batcher.start()
    while sum(map(len, batches)) < 20 and time.monotonic() - started < 5:
        time.sleep(0.01)
    assert batches[:2] == [list(range(10)), list(range(10, 20))]
    assert time.monotonic() - started < 2  # full batches do not wait for max_wait_ms
    batcher.close()  # the last five are written on close, not lost
    assert batches[2] == list(range(20, 25))


def test_batcher_writes_a_lone_item_after_max_wait() -> None:
    batcher, batches = _collect(BatchConfig(max_rows=100, max_wait_ms=100))
    batcher.start()
    started = time.monotonic()
    batcher.submit(1)
    while not batches and time.monotonic() - started < 5:
        time.sleep(0.005)
    elapsed = time.monotonic() - started
    assert batches == [[1]] and 0.09 <= elapsed < 2
    batcher.close()


def test_batcher_refuses_beyond_its_limit_without_blocking() -> None:
    batcher, _ = _collect(BatchConfig(), limit=2)
    assert [batcher.submit(n) for n in range(3)] == [True, True, False]


def test_batcher_survives_a_failing_write() -> None:
    seen: list[list[int]] = []

    def write(items: list[int]) -> None:
        seen.append(items)
        if items == [1]:
            raise RuntimeError("bug")

    batcher = Batcher("test-batcher", BatchConfig(max_wait_ms=0), write)
    batcher.start()
    batcher.submit(1)
    time.sleep(0.1)
    batcher.submit(2)
    batcher.close()
    assert seen == [[1], [2]] and not batcher.alive


class _Plain:
    def __init__(self) -> None:
        self.calls: list[tuple[Envelope, Any]] = []

    def start(self, context: AdapterContext) -> None: ...
    def close(self) -> None: ...

    def deliver(self, envelope: Envelope, payload: Any) -> Future[Delivered]:
        self.calls.append((envelope, payload))
        return Future()


class _Traced(_Plain):
    def __init__(self) -> None:
        super().__init__()
        self.lineage: list[Lineage] = []

    def deliver_traced(self, envelope: Envelope, payload: Any,
                       lineage: Lineage) -> Future[Delivered]:
        self.lineage.append(lineage)
        return Future()


def test_lineage_reaches_only_targets_that_trace_it(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("mapping: m1\nfields:\n  a: b\n")
    mapping = load_mapping(tmp_path / "m.yaml")
    envelope = Envelope.new(source="s", type="a.b.c", data={})
    plain, traced = _Plain(), _Traced()
    delivery_for("r1", plain)(envelope, {"a": 1}, mapping)
    assert plain.calls == [(envelope, {"a": 1})]
    deliver = delivery_for("r2", traced)
    deliver(envelope, {}, mapping)
    deliver(envelope, {}, None)
    assert traced.lineage == [Lineage("r2", "m1", mapping.version), Lineage("r2")]
    assert traced.calls == []


def test_mapping_version_changes_with_the_file_and_is_kept_by_the_reverse(
    tmp_path: Path,
) -> None:
    file = tmp_path / "m.yaml"
    file.write_text("mapping: m1\nfields:\n  a: b\n")
    first = load_mapping(file)
    assert len(first.version) == 16 and first.reverse().version == first.version
    assert load_mapping(file).version == first.version
    file.write_text("mapping: m1\nfields:\n  a: c\n")
    assert load_mapping(file).version != first.version


def test_audit_guard_keeps_a_failing_listener_from_raising() -> None:
    calls: list[OutcomeRecord] = []

    def broken(record: OutcomeRecord) -> None:
        calls.append(record)
        raise RuntimeError("audit bug")

    record = OutcomeRecord("r", Outcome.DELIVERED, b"{}")
    guarded(broken)(record)  # does not raise
    assert calls == [record]


def _audit_row(body: bytes, failure: dict[str, Any] | None, include_payload: bool) -> list[Any]:
    audit = SqlAudit(AuditConfig(type="sql", dsn_env="X", include_payload=include_payload))
    audit._dialect = dialect_for("mysql://u@h/db", "dsn")  # what start() would pick
    return audit._row(OutcomeRecord("r1", Outcome.DEAD_LETTERED, body, failure))


def test_audit_row_takes_the_event_and_its_failure_but_no_payload_by_default() -> None:
    body = Envelope.new(source="crm/sf", type="crm.customer.updated", subject="C-1", id="e1",
                        data={"iban": "DE89..."}).to_json()
    failure = {headers.STAGE: "deliver", headers.ERROR: "DeliveryError",
               headers.REASON: "permanent: refused", headers.ATTEMPTS: 3}
    row = dict(zip(AUDIT_COLUMNS, _audit_row(body, failure, False), strict=True))
    assert (row["route"], row["outcome"], row["envelope_id"], row["subject"]) == (
        "r1", "dead_lettered", "e1", "C-1")
    assert (row["stage"], row["error"], row["reason"], row["attempts"]) == (
        "deliver", "DeliveryError", "permanent: refused", 3)
    assert row["data"] is None
    with_payload = dict(zip(AUDIT_COLUMNS, _audit_row(body, None, True), strict=True))
    assert with_payload["data"] == '{"iban":"DE89..."}' and with_payload["stage"] is None


def test_audit_row_of_a_body_that_is_no_cloudevent_still_records_the_outcome() -> None:
    row = dict(zip(AUDIT_COLUMNS, _audit_row(b"\xff not json", None, True), strict=True))
    assert row["outcome"] == "dead_lettered" and row["envelope_id"] is None
