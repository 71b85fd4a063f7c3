from __future__ import annotations

import pytest

from middleware.mapping.paths import (
    PathSyntaxError,
    compile_getter,
    compile_setter,
    format_path,
    parse_path,
)


def test_parse_path_splits_dots_and_indexes() -> None:
    assert parse_path("a.b[2].c") == ("a", "b", 2, "c")
    assert parse_path("items[0][1]") == ("items", 0, 1)


@pytest.mark.parametrize("bad", ["", "a..b", "a.[0]", "a[x]", ".a"])
def test_parse_path_rejects_malformed_paths(bad: str) -> None:
    with pytest.raises(PathSyntaxError):
        parse_path(bad)


def test_format_path_inverts_parse_path() -> None:
    assert format_path(parse_path("customer.addresses[1].city")) == "customer.addresses[1].city"


@pytest.mark.parametrize(
    ("path", "expected"),
    [("a", 1), ("b.c", 2), ("d[1]", "y"), ("e[0].f.g", 3), ("missing", None), ("b.x", None),
     ("d[9]", None), ("a.b", None), ("d.x", None), ("n.x", None)],
)
def test_compile_getter_reads_or_gives_none(path: str, expected: object) -> None:
    data = {"a": 1, "b": {"c": 2}, "d": ["x", "y"], "e": [{"f": {"g": 3}}], "n": None}
    assert compile_getter(parse_path(path))(data) == expected


def test_compile_getter_on_non_dict_gives_none() -> None:
    assert compile_getter(("a",))(["not", "a", "dict"]) is None


def test_compile_setter_builds_nested_dicts_and_lists() -> None:
    out: dict[str, object] = {}
    compile_setter(parse_path("a.b"))(out, 1)
    compile_setter(parse_path("a.c[1].d"))(out, 2)
    compile_setter(parse_path("top"))(out, 3)
    assert out == {"a": {"b": 1, "c": [None, {"d": 2}]}, "top": 3}
