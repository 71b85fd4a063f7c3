"""``silobridge status`` arithmetic without a broker: quantiles from buckets, rates between two
scrapes of real prometheus-client output, and the table when the daemon or broker is away."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from middleware.cli import status
from middleware.config.models import Config
from middleware.scrape import histogram_quantile, parse
from middleware.stores import open_stores


def test_scrape_histogram_quantile_interpolates_like_promql() -> None:
    buckets = {0.1: 0.0, 0.5: 50.0, 1.0: 100.0, math.inf: 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.5)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.75)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.3)
    # a rank in the +Inf bucket answers the highest finite bound
    assert histogram_quantile(0.99, {1.0: 90.0, math.inf: 100.0}) == 1.0
    assert histogram_quantile(0.95, {1.0: 0.0, math.inf: 0.0}) is None
    assert histogram_quantile(0.95, {}) is None


def _exposition(delivered: int, retried: int, lags: list[float]) -> str:
    registry = CollectorRegistry()
    messages = Counter("silobridge_messages", "m", ["route", "target", "outcome"],
                       registry=registry)
    messages.labels("orders", "soap", "delivered").inc(delivered)
    messages.labels("orders", "soap", "retried").inc(retried)
    messages.labels("other", "soap", "delivered").inc(1000)
    lag = Histogram("silobridge_sync_lag_seconds", "l", ["route"], buckets=(0.1, 1, 10),
                    registry=registry)
    for value in lags:
        lag.labels("orders").observe(value)
    return generate_latest(registry).decode()


CONFIG = Config.model_validate({"routes": [
    {"name": "orders", "bind": ["crm.order.*"],
     "target": {"type": "amqp", "exchange": "x", "routing_key": "y"}}]})


def test_status_rates_and_lag_come_from_two_scrapes_of_one_route(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(status, "queue_status", lambda _config: {
        "orders": status.Queues(ready=3, retry=1, dlq=2, dlq_age=90.0)})
    before = parse(_exposition(10, 1, [0.05] * 10))
    after = parse(_exposition(30, 5, [0.05] * 10 + [5.0] * 10))
    (row,) = status.route_status(CONFIG, before, after, seconds=2.0)
    assert row.delivered_rate == pytest.approx(10.0)
    assert row.failed_rate == pytest.approx(2.0)
    assert row.lag_p95 == pytest.approx(1 + 9 * (19 - 10) / 10)  # rank 19 of 20 in (1, 10]
    table = status.render([row], daemon=True, url="http://x/metrics")
    assert table.splitlines()[1].split() == ["orders", "3", "1", "2", "90s", "0", "10.0",
                                             "2.0", "9.10s"]


def test_status_without_daemon_or_broker_says_which_columns_are_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(status, "queue_status", lambda _config: None)
    rows = status.route_status(CONFIG, None, None, seconds=2.0)
    table = status.render(rows, daemon=False, url="http://127.0.0.1:9080/metrics")
    assert table.splitlines()[1].split() == ["orders"] + ["-"] * 8
    assert "no daemon answers at http://127.0.0.1:9080/metrics" in table
    assert "the broker cannot be reached" in table


def test_status_lag_beyond_the_largest_bucket_is_shown_as_a_lower_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a change a year old, which the histogram can only count in its +Inf bucket
    monkeypatch.setattr(status, "queue_status", lambda _config: None)
    year = 365 * 86400.0
    after = parse(_exposition(1, 0, [year] * 20))
    # When status reads the p95
    (row,) = status.route_status(CONFIG, None, after, seconds=2.0)
    # Then it says "more than the largest bound (10s)", not a plain 10s
    assert row.lag_p95 == pytest.approx(10.0)
    assert row.lag_p95_capped is True
    assert status.render([row], daemon=True, url="u").splitlines()[1].split()[-1] == ">10s"


def test_status_lag_within_the_buckets_is_not_capped_and_long_lags_use_hours_and_days(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(status, "queue_status", lambda _config: None)
    (row,) = status.route_status(CONFIG, None, parse(_exposition(1, 0, [5.0] * 20)), 2.0)
    assert row.lag_p95_capped is False
    assert [status._seconds(v) for v in (90, 600, 14_400, 3 * 86400)] == [
        "90s", "10m", "4h", "3d"]


def test_status_lists_held_subjects_of_ordered_routes_from_the_store(tmp_path: Path) -> None:
    # Given an ordered route whose subject C-1 is claimed by an event in a retry tier
    config = Config.model_validate({
        "store": {"path": str(tmp_path / "s.db")},
        "routes": [{"name": "orders", "bind": ["crm.order.*"], "sync": {"ordering": "subject"},
                    "target": {"type": "amqp", "exchange": "x", "routing_key": "y"}},
                   CONFIG.routes[0].model_dump() | {"name": "plain"}]})
    stores = open_stores(config.store)
    assert stores.sync is not None
    assert stores.sync.begin("orders", "C-1", 1, "event-1", 30.0, claim=True) == "go"
    stores.sync.park("orders", "C-1", "event-1", 60.0)
    stores.close()
    # When status reads it
    held = status.held_subjects(config)
    # Then the ordered route (only) lists it, and the text says so below the table
    assert held is not None and list(held) == ["orders"]
    (row,) = held["orders"]
    assert row["subject"] == "C-1" and row["parked"] is True and row["seconds_left"] > 30
    assert "  orders: 1 (C-1)" in status.render_held(held).splitlines()
    assert status.held_subjects(CONFIG) is None and status.render_held(None) == ""


def test_status_escapes_control_characters_in_held_subjects() -> None:
    # a subject is the source's data: an escape sequence in it must not reach the terminal
    held = {"orders": [{"subject": "C-1\x1b[2J\x07", "holder": "e", "parked": False,
                        "seconds_left": 9.0}, {"subject": "Müller\u200b", "holder": "f",
                                               "parked": False, "seconds_left": 9.0}]}
    text = status.render_held(held)
    assert "\x1b" not in text and "\x07" not in text
    assert "  orders: 2 (C-1\\x1b[2J\\x07, Müller\\u200b)" in text.splitlines()
