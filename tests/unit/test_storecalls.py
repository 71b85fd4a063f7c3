"""Store calls off the loops: faults wait and retry, readiness says why, commits group up."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future

import pytest
from prometheus_client import REGISTRY

from middleware import storecalls
from middleware.errors import ProcessingError, StoreUnavailable
from middleware.storecalls import GroupCommit, StoreCalls, all_done
from middleware.storehealth import StoreHealth


def _errors(store: str, operation: str) -> float:
    return REGISTRY.get_sample_value("silobridge_store_errors_total",
                                     {"store": store, "operation": operation}) or 0.0


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storecalls, "BACKOFF", (0.01, 0.02))


@pytest.fixture
def health() -> StoreHealth:
    return StoreHealth(lambda: None)


@pytest.fixture
def calls(health: StoreHealth) -> Iterator[StoreCalls]:
    calls = StoreCalls("unit", health, threads=2)
    yield calls
    calls.close()


def test_storecalls_retry_a_fault_until_the_store_answers_and_readiness_follows(
    calls: StoreCalls, health: StoreHealth,
) -> None:
    # Given a store that fails with a full disk until it is freed
    freed = threading.Event()
    seen_while_failing: list[tuple[bool, str | None]] = []

    def record() -> str:
        if not freed.is_set():
            raise sqlite3.OperationalError("database or disk is full")
        return "stored"

    before = _errors("idempotency", "record_many")
    result: Future[str] = Future()
    # When a route's thread makes the call
    assert calls.submit(lambda: result.set_result(
        calls.call("idempotency", "record_many", record)))
    time.sleep(0.2)
    seen_while_failing.append((health.ok, health.reason()))
    freed.set()
    # Then it waited (readiness false with the reason, errors counted) and finished by itself
    assert result.result(5) == "stored"
    [(ok, reason)] = seen_while_failing
    assert not ok
    assert reason is not None and "database or disk is full" in reason
    assert "idempotency.record_many" in reason
    assert _errors("idempotency", "record_many") - before >= 3
    assert health.ok and health.reason() is None


def test_storecalls_raise_a_permanent_answer_at_once(
    calls: StoreCalls, health: StoreHealth,
) -> None:
    tries = []

    def link() -> None:
        tries.append(1)
        raise ProcessingError("cross-reference conflict", retryable=False)

    before = _errors("xref", "link")
    with pytest.raises(ProcessingError, match="conflict"):
        calls.call("xref", "link", link)
    assert tries == [1] and health.ok
    assert _errors("xref", "link") == before


def test_storecalls_give_up_with_storeunavailable_when_the_route_closes(
    health: StoreHealth,
) -> None:
    calls = StoreCalls("closing", health, threads=1)
    outcome: Future[object] = Future()

    def waiting_call() -> None:
        try:
            calls.call("idempotency", "seen", lambda: (_ for _ in ()).throw(OSError("down")))
        except Exception as exc:
            outcome.set_result(exc)

    assert calls.submit(waiting_call)
    time.sleep(0.1)
    calls.close()
    assert isinstance(outcome.result(5), StoreUnavailable)
    assert not calls.submit(lambda: None)  # closed: the caller requeues instead
    assert health.ok  # nothing waits any more


def test_groupcommit_gathers_records_that_arrive_during_a_commit_into_one_transaction(
    calls: StoreCalls,
) -> None:
    # Given a store whose first commit is slow
    transactions: list[list[tuple[str, str]]] = []
    release = threading.Event()

    def record_many(records: list[tuple[str, str]]) -> None:
        if not transactions:
            release.wait(5)
        transactions.append(list(records))

    commits = GroupCommit(calls, record_many)
    first = commits.commit([("r", "1")])
    time.sleep(0.05)
    # When three more batches arrive while it runs
    later = [commits.commit([("r", str(n))]) for n in (2, 3, 4)]
    assert commits.uncommitted == 4
    release.set()
    all_done([first, *later]).result(5)
    # Then they went in one second transaction, and every Future completed
    assert transactions == [[("r", "1")], [("r", "2"), ("r", "3"), ("r", "4")]]
    assert commits.uncommitted == 0


def test_groupcommit_fails_the_futures_when_the_route_is_closed(health: StoreHealth) -> None:
    calls = StoreCalls("closed", health, threads=1)
    calls.close()
    commits = GroupCommit(calls, lambda records: None)
    with pytest.raises(StoreUnavailable):
        commits.commit([("r", "1")]).result(1)
    assert commits.uncommitted == 0


def test_all_done_fails_with_the_first_failure_and_waits_for_every_future() -> None:
    a: Future[None] = Future()
    b: Future[None] = Future()
    combined = all_done([a, b])
    a.set_exception(StoreUnavailable("x"))
    assert not combined.done()
    b.set_result(None)
    assert isinstance(combined.exception(1), StoreUnavailable)
    assert all_done([]).result(0) is None


def test_storehealth_probe_turns_readiness_false_with_the_reason_and_back() -> None:
    # Given a store whose probe fails (the PostgreSQL server is down)
    down = [True]

    def probe() -> None:
        if down[0]:
            raise ProcessingError("state store unreachable (OperationalError); will retry",
                                  retryable=True)

    health = StoreHealth(probe, interval=0.02)
    before = _errors("store", "probe")
    health.start()
    try:
        assert _wait(lambda: not health.ok)
        reason = health.reason()
        assert reason is not None and "store.probe" in reason and "unreachable" in reason
        assert _errors("store", "probe") > before
        # When it answers again, readiness turns true by itself
        down[0] = False
        assert _wait(lambda: health.ok)
        assert health.reason() is None
    finally:
        health.stop()
    assert not health.thread.is_alive()


def test_storehealth_shows_a_driver_error_by_type_only() -> None:
    class DriverError(Exception):
        pass

    health = StoreHealth(lambda: None)
    health.failed("idempotency", "seen", DriverError("host db.internal user admin"))
    with health.waiting():
        reason = health.reason()
    assert reason is not None and "DriverError" in reason and "db.internal" not in reason


def _wait(predicate: object, timeout: float = 5) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())
