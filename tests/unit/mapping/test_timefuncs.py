"""Time-zone edge cases: DST gaps and folds, offsets, naive times, day changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from middleware.mapping.timefuncs import (
    StepError,
    attach_zone,
    datetime_formatter,
    datetime_parser,
    format_date,
    parse_date,
    zone_converter,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def test_attach_zone_refuses_time_in_spring_gap() -> None:
    with pytest.raises(StepError, match="gap"):
        attach_zone(datetime(2024, 3, 31, 2, 30), BERLIN, "earlier")


def test_attach_zone_picks_earlier_or_later_in_autumn_fold() -> None:
    naive = datetime(2024, 10, 27, 2, 30)
    assert attach_zone(naive, BERLIN, "earlier").utcoffset() == timedelta(hours=2)
    assert attach_zone(naive, BERLIN, "later").utcoffset() == timedelta(hours=1)


def test_attach_zone_raise_refuses_ambiguous_time() -> None:
    with pytest.raises(StepError, match="ambiguous"):
        attach_zone(datetime(2024, 10, 27, 2, 30), BERLIN, "raise")


def test_attach_zone_accepts_unambiguous_time_with_any_policy() -> None:
    assert attach_zone(datetime(2024, 6, 1, 12, 0), BERLIN, "raise").hour == 12


@pytest.mark.parametrize(
    ("utc", "local"),
    [
        ("2024-03-31T00:59:59+00:00", "2024-03-31T01:59:59+01:00"),  # last second of CET
        ("2024-03-31T01:00:00+00:00", "2024-03-31T03:00:00+02:00"),  # first of CEST
        ("2024-10-27T00:30:00+00:00", "2024-10-27T02:30:00+02:00"),  # fold, first pass
        ("2024-10-27T01:30:00+00:00", "2024-10-27T02:30:00+01:00"),  # fold, second pass
        ("2024-12-31T23:30:00+00:00", "2025-01-01T00:30:00+01:00"),  # new year locally
    ],
)
def test_zone_converter_utc_to_berlin_across_dst(utc: str, local: str) -> None:
    result = zone_converter(None, BERLIN, "earlier")(datetime.fromisoformat(utc))
    assert result.isoformat() == local


def test_zone_converter_us_dst_change_differs_from_europe() -> None:
    # 2024-03-10 is the US spring-forward day, three weeks before Europe's.
    result = zone_converter(None, NEW_YORK, "earlier")(datetime(2024, 3, 10, 7, 30, tzinfo=UTC))
    assert result.isoformat() == "2024-03-10T03:30:00-04:00"


def test_zone_converter_naive_without_source_is_refused() -> None:
    with pytest.raises(StepError, match="'from'"):
        zone_converter(None, BERLIN, "earlier")(datetime(2024, 1, 1))


def test_zone_converter_ignores_source_for_aware_values() -> None:
    aware = datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert zone_converter(NEW_YORK, BERLIN, "earlier")(aware).hour == 13


def test_zone_converter_refuses_text() -> None:
    with pytest.raises(StepError, match="parse_datetime"):
        zone_converter(None, BERLIN, "earlier")("2024-01-01T00:00:00Z")


def test_datetime_parser_iso_accepts_z_and_offsets() -> None:
    assert datetime_parser("iso8601")("2024-01-01T10:00:00Z").utcoffset() is not None
    assert datetime_parser("iso8601")("2024-01-01T10:00:00").tzinfo is None


def test_datetime_parser_mismatch_names_format_not_value() -> None:
    with pytest.raises(StepError) as caught:
        datetime_parser("%d.%m.%Y")("31/12/2024 secret")
    assert "%d.%m.%Y" in str(caught.value)
    assert "secret" not in str(caught.value)


def test_datetime_formatter_strftime_and_iso() -> None:
    moment = datetime(2024, 5, 1, 8, 5, tzinfo=UTC)
    assert datetime_formatter("%d.%m.%Y %H:%M")(moment) == "01.05.2024 08:05"
    assert datetime_formatter("iso8601")(moment) == "2024-05-01T08:05:00+00:00"


def test_parse_and_format_date_round_trip() -> None:
    day = parse_date("31.12.2024", "%d.%m.%Y")
    assert format_date(day, "iso8601") == "2024-12-31"
    assert format_date(datetime(2024, 1, 2, 3), "%Y%m%d") == "20240102"


def test_parse_date_refuses_non_text() -> None:
    with pytest.raises(StepError):
        parse_date(20240101, "%Y%m%d")


def test_datetime_parser_epoch_and_epoch_ms_give_utc() -> None:
    assert datetime_parser("epoch_ms")(1615367339000).isoformat() == "2021-03-10T09:08:59+00:00"
    assert datetime_parser("epoch")("1615367339").isoformat() == "2021-03-10T09:08:59+00:00"
    with pytest.raises(StepError, match="expects a number"):
        datetime_parser("epoch")(True)


def test_datetime_formatter_epoch_needs_an_offset() -> None:
    moment = datetime(2021, 3, 10, 9, 8, 59, tzinfo=UTC)
    assert datetime_formatter("epoch_ms")(moment) == 1615367339000
    with pytest.raises(StepError, match="offset"):
        datetime_formatter("epoch")(datetime(2021, 3, 10))
