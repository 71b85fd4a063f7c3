"""Date, time and time-zone conversions behind the date transforms.

Formats are always explicit (``iso8601``, ``epoch``, ``epoch_ms`` or a strftime pattern)
because guessing a date format is how 03/04 becomes April in one system and March in the
other. Time zones come from the IANA database through zoneinfo. Attaching a zone to a
wall-clock time is where DST bites: a time in the spring-forward gap does not exist and is
refused; a time in the autumn fold happens twice and the rule picks ``earlier`` (default) or
``later``, or refuses it with ``raise``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from functools import partial
from typing import Literal
from zoneinfo import ZoneInfo

__all__ = [
    "EPOCH",
    "ISO",
    "StepError",
    "attach_zone",
    "datetime_formatter",
    "datetime_parser",
    "format_date",
    "parse_date",
    "zone_converter",
]

ISO = "iso8601"
EPOCH = {"epoch": 1, "epoch_ms": 1000}


class StepError(ValueError):
    """A transform refused a value; the message is safe to log because it never quotes it.

    Errors raised by Python itself (``int('x')``) quote the value, so the engine reports only
    their type; transforms raise this one to give a hint instead.
    """

Ambiguous = Literal["earlier", "later", "raise"]


def datetime_parser(fmt: str) -> Callable[[object], datetime]:
    """Text in the stated format to a datetime (aware when the text carries an offset);
    ``epoch``/``epoch_ms`` read seconds/milliseconds since 1970 as a UTC datetime."""
    if fmt in EPOCH:
        return _epoch_parser(fmt, EPOCH[fmt])
    parse = datetime.fromisoformat if fmt == ISO else partial(_strptime, fmt=fmt)

    def parse_datetime(text: object) -> datetime:
        if type(text) is not str:
            raise StepError("parse_datetime expects text")
        try:
            return parse(text)
        except ValueError:
            raise StepError(f"the text is not a datetime in format {fmt!r}") from None

    return parse_datetime


def datetime_formatter(fmt: str) -> Callable[[object], str | int]:
    """A datetime to text; ``iso8601`` keeps the offset when the datetime has one;
    ``epoch``/``epoch_ms`` give whole seconds/milliseconds since 1970."""

    scale = EPOCH.get(fmt)

    def format_datetime(value: object) -> str | int:
        if not isinstance(value, datetime):
            raise StepError("format_datetime expects a datetime; add parse_datetime before it")
        if scale is not None:
            if value.tzinfo is None:
                raise StepError(f"{fmt} needs a datetime with an offset; add timezone first")
            return round(value.timestamp() * scale)
        return value.isoformat() if fmt == ISO else value.strftime(fmt)

    return format_datetime


def _epoch_parser(fmt: str, scale: int) -> Callable[[object], datetime]:
    def parse_epoch(value: object) -> datetime:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise StepError(f"parse_datetime {fmt} expects a number")
        try:
            return datetime.fromtimestamp(float(value) / scale, UTC)
        except (ValueError, OverflowError, OSError):
            raise StepError(f"the value is not a time in {fmt}") from None

    return parse_epoch


def parse_date(text: object, fmt: str) -> date:
    """Text in the stated format to a calendar date."""
    if not isinstance(text, str):
        raise StepError("parse_date expects text")
    try:
        return date.fromisoformat(text) if fmt == ISO else datetime.strptime(text, fmt).date()
    except ValueError:
        raise StepError(f"the text is not a date in format {fmt!r}") from None


def format_date(value: object, fmt: str) -> str:
    """A date (or the date part of a datetime) to text."""
    if not isinstance(value, date):
        raise StepError("format_date expects a date; add parse_date before it")
    day = value.date() if isinstance(value, datetime) else value
    return day.isoformat() if fmt == ISO else day.strftime(fmt)


def attach_zone(naive: datetime, zone: ZoneInfo, ambiguous: Ambiguous) -> datetime:
    """Read a wall-clock time as local time in zone, refusing times DST makes impossible."""
    first = naive.replace(tzinfo=zone, fold=0)
    second = naive.replace(tzinfo=zone, fold=1)
    if _roundtrip(first) != naive.replace(fold=0):
        raise StepError("the local time falls in a daylight-saving gap and does not exist")
    if first.utcoffset() != second.utcoffset():
        if ambiguous == "raise":
            raise StepError("the local time is ambiguous (daylight-saving fold)")
        return second if ambiguous == "later" else first
    return first


def zone_converter(
    source: ZoneInfo | None, target: ZoneInfo, ambiguous: Ambiguous
) -> Callable[[object], datetime]:
    """Express a datetime in target; a naive one is first read as local time in source."""

    def convert_zone(value: object) -> datetime:
        if not isinstance(value, datetime):
            raise StepError("timezone expects a datetime; add parse_datetime before it")
        if value.tzinfo is None:
            if source is None:
                raise StepError("the datetime has no offset; set 'from' to the zone it is in")
            value = attach_zone(value, source, ambiguous)
        return value.astimezone(target)

    return convert_zone


def _strptime(text: str, fmt: str) -> datetime:
    return datetime.strptime(text, fmt)


def _roundtrip(local: datetime) -> datetime:
    """Through UTC and back: a non-existent local time comes back shifted by the gap."""
    return local.astimezone(UTC).astimezone(local.tzinfo).replace(tzinfo=None, fold=0)
