"""A Prometheus histogram whose observations are applied in bulk, for the per-message ones.

Every message a worker settles is observed three times (processing time, delivery time, sync
lag). prometheus_client's ``observe`` walks the bucket bounds and takes two locks each time:
~0.7 µs alone, more under load, on the broker I/O thread that bounds a worker's throughput.
Here ``observe`` only queues the value; the queue is applied in one pass (a binary search per
value, one update per bucket touched) once it holds ``BATCH`` values, and always before the
histogram is collected, so every scrape, ``REGISTRY.get_sample_value`` and exposition reads
exactly what was observed. The sum is added value by value in observation order, so it is the
same float ``observe`` would have made. ``deque.append`` and ``popleft`` are atomic, so
observing from several threads loses nothing while a drain runs.

Not for prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``): there another
process reads the values from files and never calls this process's collection, so up to
``BATCH - 1`` observations per child would be missing from a scrape.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable

from prometheus_client import Histogram
from prometheus_client.samples import Sample

__all__ = ["BATCH", "BufferedHistogram"]

BATCH = 512  # values queued before they are applied: bounds the memory (~30 KiB) per child


class BufferedHistogram(Histogram):
    """A ``Histogram`` (same samples, same exposition) with a cheaper ``observe``."""

    def _metric_init(self) -> None:
        super()._metric_init()
        self._queued: deque[float] = deque()
        self._drain_lock = threading.Lock()

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        try:
            queued = self._queued  # only what can be observed has one (``_metric_init``)
        except AttributeError:
            self._raise_if_not_observable()  # a parent with labels: its ValueError
            raise
        if exemplar:  # kept on its bucket: the plain path, after what is queued
            self._drain()
            with self._drain_lock:
                super().observe(amount, exemplar)
            return
        queued.append(amount)
        if len(queued) >= BATCH:
            self._drain()

    def _drain(self) -> None:
        bounds = self._upper_bounds
        counts = [0] * len(bounds)
        with self._drain_lock:  # one drain at a time: the sum is read, added to, written back
            total = self._sum.get()
            taken = 0
            queued = self._queued
            while queued:
                amount = queued.popleft()
                total += amount
                taken += 1
                if amount == amount:  # NaN falls in no bucket, as in ``observe``
                    counts[bisect_left(bounds, amount)] += 1
            if taken:
                self._sum.set(total)
                for bucket, count in zip(self._buckets, counts, strict=True):
                    if count:
                        bucket.inc(count)

    def _child_samples(self) -> Iterable[Sample]:
        self._drain()
        return super()._child_samples()
