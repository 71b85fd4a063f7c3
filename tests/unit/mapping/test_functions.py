"""Every registered transform: its result, its refusals, and its declared inverse."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest

from middleware.mapping.functions import (
    REGISTRY,
    StepError,
    TransformSpecError,
    build_step,
    inverse_step,
    to_text,
)


def run(spec: Any, value: Any) -> Any:
    return build_step(spec)(value)


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        ("str", 42, "42"),
        ("str", True, "true"),
        ("str", Decimal("1E+2"), "100"),
        ("str", date(2024, 1, 2), "2024-01-02"),
        ("str", 2.5, "2.5"),
        ("int", "42", 42),
        ("int", " 7 ", 7),
        ("int", 3.0, 3),
        ("int", Decimal("5"), 5),
        ("float", "2.5", 2.5),
        ("float", 3, 3.0),
        ("decimal", "19.90", Decimal("19.90")),
        ("decimal", 0.1, Decimal("0.1")),
        ("bool", "yes", True),
        ("bool", "OFF", False),
        ("bool", 1, True),
        ("bool", False, False),
        ("upper", "eur", "EUR"),
        ("lower", "EUR", "eur"),
        ("trim", "  a b  ", "a b"),
        ({"prefix": "CRM-"}, "C-1", "CRM-C-1"),
        ({"suffix": "-DE"}, "X", "X-DE"),
        ({"strip_prefix": "CRM-"}, "CRM-C-1", "C-1"),
        ({"strip_prefix": "CRM-"}, "C-1", "C-1"),
        ({"strip_suffix": "-DE"}, "X-DE", "X"),
        ({"replace": {"old": "/", "new": "-"}}, "a/b/c", "a-b-c"),
        ({"regex_replace": {"pattern": r"\s+", "repl": " "}}, "a \t b", "a b"),
        ({"regex_replace": {"pattern": r"(\d+)-(\d+)", "repl": r"\2-\1"}}, "12-34", "34-12"),
        ({"pad": {"width": 6, "fill": "0"}}, 42, "000042"),
        ({"pad": {"width": 4, "side": "right"}}, "ab", "ab  "),
        ({"pad": {"width": 2}}, "abcd", "abcd"),
        ({"truncate": 3}, "abcdef", "abc"),
        ({"round": {"digits": 2}}, Decimal("2.345"), Decimal("2.34")),
        ({"round": {"digits": 2, "mode": "half_up"}}, Decimal("2.345"), Decimal("2.35")),
        ({"round": {"digits": 1}}, 2.25, 2.2),
        ({"round": {"digits": 0, "mode": "half_up"}}, 2.5, 3.0),
        ({"split": ","}, "a,b", ["a", "b"]),
        ({"join": " "}, ["Ada", None, "Lovelace"], "Ada Lovelace"),
        ("concat", ["Haupt", "str.", None, " 1"], "Hauptstr. 1"),
        ("coalesce", [None, "b", "c"], "b"),
        ("coalesce", [None, None], None),
        ({"nullif": ""}, "", None),
        ({"nullif": "n/a"}, "x", "x"),
    ],
)
def test_transform_gives_expected_value(spec: Any, value: Any, expected: Any) -> None:
    result = run(spec, value)
    assert result == expected
    assert type(result) is type(expected)


def test_transform_dates_and_zones_compose() -> None:
    moment = run({"parse_datetime": "iso8601"}, "2024-07-01T10:00:00Z")
    local = run({"timezone": {"to": "Asia/Shanghai"}}, moment)
    assert run({"format_datetime": "%Y-%m-%d %H:%M"}, local) == "2024-07-01 18:00"
    day = run({"parse_date": "%d.%m.%Y"}, "01.07.2024")
    assert run({"format_date": "iso8601"}, day) == "2024-07-01"


def test_transform_timezone_reads_naive_time_in_from_zone() -> None:
    naive = datetime(2024, 7, 1, 12, 0)
    result = run({"timezone": {"from": "Europe/Berlin", "to": "UTC"}}, naive)
    assert result.isoformat() == "2024-07-01T10:00:00+00:00"


@pytest.mark.parametrize(
    ("spec", "value"),
    [
        ("int", "4.5"),
        ("int", "abc"),
        ("int", 2.5),
        ("int", True),
        ("float", "x"),
        ("float", [1]),
        ("decimal", "NaN"),
        ("decimal", "1,5"),
        ("bool", "maybe"),
        ("upper", {"a": 1}),
        ({"round": {"digits": 2}}, "1.5"),
        ("concat", "not a list"),
        ({"format_datetime": "iso8601"}, "2024-01-01"),
    ],
)
def test_transform_refuses_bad_value_without_quoting_it(spec: Any, value: Any) -> None:
    with pytest.raises(StepError) as caught:
        run(spec, value)
    assert repr(value) not in str(caught.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("uper", "did you mean 'upper'"),
        ({"prefx": "x"}, "did you mean 'prefix'"),
        ("prefix", "needs an argument"),
        ({"upper": 1}, "takes no argument"),
        ({"prefix": 1}, "valid string"),
        ({"pad": {"width": 0}}, "greater than or equal to 1"),
        ({"pad": {"width": 3, "fil": "0"}}, "did you mean 'fill'"),
        ({"regex_replace": {"pattern": "(", "repl": ""}}, "regular expression"),
        ({"timezone": {"to": "Europe/Berln"}}, "did you mean 'Europe/Berlin'"),
        ({"timezone": {"to": "UTC", "ambiguous": "sometimes"}}, "earlier"),
        ({"round": {"digits": 2}, "upper": None}, "one-key mapping"),
    ],
)
def test_build_step_rejects_bad_spec_with_hint(spec: Any, message: str) -> None:
    with pytest.raises(TransformSpecError, match=message):
        build_step(spec)


@pytest.mark.parametrize(
    ("spec", "value"),
    [
        ({"prefix": "CRM-"}, "C-1"),
        ({"suffix": "-X"}, "a"),
        ("upper", "eur"),
        ({"split": ";"}, "a;b"),
        ({"timezone": {"from": "UTC", "to": "Europe/Berlin"}}, datetime(2024, 10, 27, 0, 30)),
        ({"parse_date": "%d.%m.%Y"}, "05.03.2024"),
        ({"format_datetime": "%Y-%m-%d %H:%M:%S%z"},
         datetime.fromisoformat("2024-03-05T10:30:00+01:00")),
        ("int", "42"),
        ("decimal", "19.90"),
    ],
)
def test_inverse_step_undoes_the_step(spec: Any, value: Any) -> None:
    inverse = inverse_step(spec)
    assert inverse is not None
    forward = build_step(spec)(value)
    back = build_step(inverse)(forward)
    if isinstance(value, datetime) and value.tzinfo is None:
        back = back.replace(tzinfo=None)  # the inverse yields the same instant, zone-aware
    assert back == value


@pytest.mark.parametrize("spec", ["trim", "str", "bool", "concat", "coalesce", {"truncate": 3},
                                  {"pad": {"width": 3}}, {"nullif": ""}, {"round": {"digits": 1}},
                                  {"replace": {"old": "a", "new": "b"}}])
def test_inverse_step_is_none_for_lossy_transforms(spec: Any) -> None:
    assert inverse_step(spec) is None


def test_inverse_step_timezone_without_from_is_refused() -> None:
    with pytest.raises(TransformSpecError, match="from"):
        inverse_step({"timezone": {"to": "UTC"}})


def test_registry_documents_every_transform() -> None:
    for name, found in REGISTRY.items():
        assert found.summary.endswith("."), name
        assert name in found.example, name


def test_to_text_refuses_containers() -> None:
    with pytest.raises(StepError):
        to_text([1])
