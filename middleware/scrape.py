"""Reading a running daemon's ``/metrics``: the numbers ``silobridge status`` and the demo show.

Operators watching a terminal should see what Grafana shows without running Prometheus, so this
reads the same exposition Prometheus scrapes (parsed by prometheus-client) and computes
quantiles from histogram buckets the way ``histogram_quantile`` does: linear interpolation
inside the bucket the rank falls in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Scrape", "histogram_quantile", "parse", "scrape", "scrape_url"]


@dataclass(frozen=True)
class Scrape:
    """One scrape: every sample as (name, sorted labels) -> value."""

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]

    def sum(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``labels``."""
        wanted = set(labels.items())
        return sum(value for (sample, found), value in self.samples.items()
                   if sample == name and wanted <= set(found))

    def buckets(self, histogram: str, **labels: str) -> dict[float, float]:
        """Cumulative bucket counts by upper bound, summed over the labels not given."""
        wanted = set(labels.items())
        counts: dict[float, float] = {}
        for (sample, found), value in self.samples.items():
            if sample != f"{histogram}_bucket" or not wanted <= set(found):
                continue
            bound = float(dict(found)["le"])
            counts[bound] = counts.get(bound, 0.0) + value
        return counts


def scrape_url(host: str, port: int) -> str:
    """The /metrics URL of an ops server configured to listen on ``host``."""
    reachable = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    return f"http://{reachable}:{port}/metrics"


def scrape(url: str, timeout: float = 2.0) -> Scrape | None:
    """The daemon's metrics, or None when no daemon answers at ``url``."""
    try:
        response = httpx.get(url, timeout=timeout)
        response.raise_for_status()
    except httpx.HTTPError:
        return None
    return parse(response.text)


def parse(text: str) -> Scrape:
    """A scrape from Prometheus text exposition."""
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return Scrape(samples)


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The q-quantile of cumulative ``buckets``; None without observations.

    Like PromQL: a rank in the +Inf bucket answers the highest finite bound.
    """
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            share = (rank - lower_count) / (count - lower_count)
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound
