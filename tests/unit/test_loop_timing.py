"""The broker loop's guard times every callback: a blocking one is seen, counted and logged."""

from __future__ import annotations

import time

from prometheus_client import REGISTRY

from middleware.broker import guard
from middleware.broker.guard import guarded, recording_blocks


def _slow_count(where: str) -> float:
    return REGISTRY.get_sample_value("silobridge_broker_loop_slow_callbacks_total",
                                     {"where": where}) or 0.0


def test_guard_records_callbacks_longer_than_the_threshold_only() -> None:
    def blocking() -> None:
        time.sleep(0.02)

    def quick() -> None:
        pass

    with recording_blocks(0.005) as blocked:
        guarded("deliver", blocking)()
        guarded("deliver", quick)()
    assert [(b.where, b.name) for b in blocked] == [
        ("deliver", blocking.__qualname__)]
    assert blocked[0].seconds >= 0.02
    # outside a recording nothing is collected, and the cheap threshold is back
    assert guard._threshold == guard.SLOW_AFTER


def test_guard_counts_a_callback_that_blocks_longer_than_slow_after() -> None:
    before = _slow_count("scheduled")

    def stalls() -> None:
        time.sleep(guard.SLOW_AFTER + 0.01)

    guarded("scheduled", stalls)()
    guarded("scheduled", lambda: None)()
    assert _slow_count("scheduled") == before + 1


def test_guard_times_a_callback_that_raises_too() -> None:
    def fails_slowly() -> None:
        time.sleep(0.01)
        raise RuntimeError("bad value")

    with recording_blocks(0.005) as blocked:
        guarded("publish", fails_slowly)()  # contained, as before
    assert [b.where for b in blocked] == ["publish"]
