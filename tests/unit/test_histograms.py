"""BufferedHistogram: what a scrape reads is what plain prometheus_client would have read."""

from __future__ import annotations

import math
import random
import threading

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from middleware.histograms import BATCH, BufferedHistogram

BUCKETS = (0.005, 0.05, 0.5, 5.0)


def _pair() -> tuple[Histogram, BufferedHistogram, CollectorRegistry, CollectorRegistry]:
    plain_registry, buffered_registry = CollectorRegistry(), CollectorRegistry()
    plain = Histogram("t_seconds", "t", ["route"], buckets=BUCKETS, registry=plain_registry)
    buffered = BufferedHistogram("t_seconds", "t", ["route"], buckets=BUCKETS,
                                 registry=buffered_registry)
    return plain, buffered, plain_registry, buffered_registry


def _exposition(registry: CollectorRegistry) -> list[str]:
    """The exposition without the _created lines (their timestamps differ)."""
    return [line for line in generate_latest(registry).decode().splitlines()
            if "_created" not in line]


def test_buffered_histogram_scrapes_exactly_what_was_observed() -> None:
    # Given values on every bound, between them, beyond the last, negative and infinite
    values = [0.005, 0.05, 0.5, 5.0, -1.0, 0.0, 1e9, math.inf, 0.004999, 0.0051]
    values += [random.Random(7).uniform(0, 6) for _ in range(BATCH * 2 + 17)]
    plain, buffered, plain_registry, buffered_registry = _pair()
    # When both observe them (more than one batch, so some were applied before the scrape)
    for value in values:
        plain.labels("r").observe(value)
        buffered.labels("r").observe(value)
    # Then the exposition is the same line for line, the sum to the last bit
    assert _exposition(buffered_registry) == _exposition(plain_registry)
    assert buffered_registry.get_sample_value("t_seconds_sum", {"route": "r"}) == \
        plain_registry.get_sample_value("t_seconds_sum", {"route": "r"})


def test_buffered_histogram_is_exact_at_every_read_not_only_per_batch() -> None:
    _plain, buffered, _reg, registry = _pair()
    buffered.labels("r").observe(0.01)
    assert registry.get_sample_value("t_seconds_count", {"route": "r"}) == 1
    assert registry.get_sample_value("t_seconds_bucket", {"route": "r", "le": "0.05"}) == 1
    buffered.labels("r").observe(7.0)
    assert registry.get_sample_value("t_seconds_count", {"route": "r"}) == 2
    assert registry.get_sample_value("t_seconds_bucket", {"route": "r", "le": "5.0"}) == 1


def test_buffered_histogram_with_labels_refuses_observations_like_histogram() -> None:
    _plain, buffered, _reg, _registry = _pair()
    with pytest.raises(ValueError, match="missing label values"):
        buffered.observe(1.0)


def test_buffered_histogram_nan_counts_in_the_sum_only_like_observe() -> None:
    plain, buffered, plain_registry, buffered_registry = _pair()
    for histogram in (plain, buffered):
        histogram.labels("r").observe(math.nan)
        histogram.labels("r").observe(0.1)
    assert _exposition(buffered_registry) == _exposition(plain_registry)


def test_buffered_histogram_loses_nothing_across_threads() -> None:
    # Given four threads observing while scrapes drain the queue concurrently
    _plain, buffered, _reg, registry = _pair()
    child = buffered.labels("r")
    per_thread = BATCH * 5 + 3

    def observe() -> None:
        for _ in range(per_thread):
            child.observe(0.01)

    threads = [threading.Thread(target=observe) for _ in range(4)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        registry.get_sample_value("t_seconds_count", {"route": "r"})
    for thread in threads:
        thread.join()
    # Then every observation is counted, in the right bucket
    assert registry.get_sample_value("t_seconds_count", {"route": "r"}) == 4 * per_thread
    assert registry.get_sample_value("t_seconds_bucket",
                                     {"route": "r", "le": "0.005"}) == 0
