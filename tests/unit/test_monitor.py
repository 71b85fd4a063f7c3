"""The daemon's chores, each on a thread named for its job, outlive a bad turn: a failing
store prune, a job that raises; a broken mapping edit is logged and the old mapping kept."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from middleware.config.models import Config, StoreConfig
from middleware.mapping import MappingSet
from middleware.periodic import Periodic
from middleware.pruning import StorePruning, subject_retention
from middleware.reload import MappingReloads


class LockedStore:
    def __init__(self) -> None:
        self.prunes = 0

    def prune(self, before: float) -> int:
        self.prunes += 1
        raise sqlite3.OperationalError("database is locked")


class CountingStore:
    def __init__(self) -> None:
        self.cutoffs: list[float] = []

    def prune(self, before: float) -> int:
        self.cutoffs.append(before)
        return 1


def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


def test_store_pruning_keeps_running_when_the_store_fails() -> None:
    store = LockedStore()
    chore = Periodic("store-pruning", 0.01, StorePruning(  # type: ignore[arg-type]
        StoreConfig(), store).prune, at_start=True)
    chore.start()
    try:
        assert _until(lambda: store.prunes >= 3)
        assert chore.is_alive()  # failed, tried again, still there
    finally:
        chore.stop()


def test_store_pruning_forgets_records_older_than_the_retention() -> None:
    store = CountingStore()
    StorePruning(StoreConfig(retention_days=2), store).prune()  # type: ignore[arg-type]
    (cutoff,) = store.cutoffs
    assert abs(cutoff - (time.time() - 2 * 86400)) < 5


class SyncPrunes:
    """A sync store whose fingerprint prune fails (locked) and whose subject prune deletes 3."""

    def __init__(self) -> None:
        self.cutoffs: list[float] = []

    def prune_echoes(self, chunk: int = 5000) -> int:
        raise sqlite3.OperationalError("database is locked")

    def prune_subjects(self, before: float, chunk: int = 5000) -> int:
        self.cutoffs.append(before)
        return 3


def _pruned(records: str) -> float:
    return REGISTRY.get_sample_value("silobridge_store_pruned_total",
                                     {"records": records}) or 0.0


def test_store_pruning_prunes_two_way_state_past_retention_one_kind_at_a_time() -> None:
    # Given: a sync store whose fingerprint prune fails this turn
    sync, before = SyncPrunes(), _pruned("sync_subject")
    echoes_before = _pruned("sync_echo")
    pruning = StorePruning(StoreConfig(retention_days=2), CountingStore(),  # type: ignore[arg-type]
                           sync, keep_subjects=3 * 86400)  # type: ignore[arg-type]
    pruning.prune()
    # Then: the subject rows are still pruned, with their own retention, and counted (the
    # counter, not the log: a logger cached by an earlier test escapes capture_logs in a full run)
    (cutoff,) = sync.cutoffs
    assert abs(cutoff - (time.time() - 3 * 86400)) < 5
    assert _pruned("sync_subject") - before == 3
    assert _pruned("sync_echo") == echoes_before


def test_subject_retention_is_the_store_retention_or_a_longer_conflict_window() -> None:
    def config(window: float) -> Config:
        pair = [{"name": n, "bind": [f"{n}.x.*"], "target": {"type": "scripted"},
                 "sync": {"echo": {"pair": o, "fields": ["a"]},
                          "conflict": {"rule": "latest-wins", "window": window}}}
                for n, o in (("a", "b"), ("b", "a"))]
        return Config.model_validate({"store": {"retention_days": 1}, "routes": pair})

    assert subject_retention(config(60)) == 86400
    assert subject_retention(config(3 * 86400)) == 3 * 86400


def test_periodic_runs_again_after_a_job_raises_and_closes_on_stop() -> None:
    calls: list[int] = []
    stopped = threading.Event()

    def job() -> None:
        calls.append(1)
        raise RuntimeError("a bug in a chore")

    chore = Periodic("gauges", 0.01, job, on_stop=stopped.set)
    with capture_logs() as logs:
        chore.start()
        assert _until(lambda: chore.runs >= 3)
        assert chore.is_alive()
        chore.stop()
    assert len(calls) >= 3 and not chore.is_alive() and stopped.is_set()
    assert any(entry["event"] == "background chore failed" and entry["chore"] == "gauges"
               for entry in logs)


def test_mapping_reloads_log_a_broken_edit_once(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("mapping: t\nfields: {a: x}\n")
    mappings = MappingSet([path])
    old = mappings.get(path)
    reloads = MappingReloads(mappings)
    path.write_text("mapping: t\nfields: {a: {from: x, transform: [uper]}}\n")
    with capture_logs() as logs:
        for _ in range(4):  # settle: loaded once unchanged since the previous poll
            reloads.reload()
    rejected = [entry for entry in logs if entry["event"] == "mapping reload rejected"]
    assert len(rejected) == 1 and "fields.a.transform.0" in rejected[0]["problem"]
    assert mappings.get(path) is old
