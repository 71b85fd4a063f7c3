"""Every rule kind of the mapping language, compiled and applied."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from middleware.errors import MappingError, XrefMissing
from middleware.mapping import Mapping
from middleware.mapping.paths import compile_getter

Load = Callable[[str], Mapping]
LINKS = {("crm.customer", "C-1", "erp.account"): "A-7",
         ("erp.account", "A-7", "crm.customer"): "C-1"}


def lookup(from_ns: str, key: str, to_ns: str) -> str | None:
    return LINKS.get((from_ns, key, to_ns))


def test_rule_path_copy_supports_dots_indexes_and_shorthand(mapping: Load) -> None:
    m = mapping("""
        a: x
        b: {from: y.z}
        c: {from: "items[1].sku"}
    """)
    assert m.apply({"x": 1, "y": {"z": 2}, "items": [{"sku": "A"}, {"sku": "B"}]}) == {
        "a": 1, "b": 2, "c": "B"}


def test_rule_plain_path_compiles_to_an_inline_read_or_the_bare_getter(mapping: Load) -> None:
    # Given rules that only copy a path, then no wrapper stands between apply and the dict
    m = mapping("a: x\nb: y.z")
    cells = getattr(m._build, "__closure__", None) or ()
    rules = next(c.cell_contents for c in cells if isinstance(c.cell_contents, tuple))
    assert rules[0][:3] == ("a", "x", None)  # a top-level key is read inline by the builder
    assert rules[1][1] is None
    assert rules[1][3].__code__ is compile_getter(("y", "z")).__code__


def test_rule_missing_source_leaves_field_out(mapping: Load) -> None:
    assert mapping("a: x\nb: y").apply({"x": 1, "y": None}) == {"a": 1}


def test_rule_constant(mapping: Load) -> None:
    assert mapping("a: {value: [1, 2]}\nb: {value: ZOR}").apply({}) == {"a": [1, 2], "b": "ZOR"}


def test_rule_default_used_as_is_when_missing(mapping: Load) -> None:
    m = mapping("c: {from: currency, default: cny, transform: [upper]}")
    assert m.apply({}) == {"c": "cny"}
    assert m.apply({"currency": "eur"}) == {"c": "EUR"}


def test_rule_required_missing_is_mapping_error_naming_rule(mapping: Load) -> None:
    m = mapping("out: {from: a.b, required: true}")
    with pytest.raises(MappingError) as caught:
        m.apply({"a": {}})
    assert (caught.value.mapping, caught.value.rule, caught.value.path) == ("t", "out", "a.b")
    assert "m.yaml:3" in str(caught.value)
    assert not caught.value.retryable


def test_rule_transform_pipeline_runs_in_order(mapping: Load) -> None:
    m = mapping('a: {from: x, transform: [trim, upper, {prefix: "CRM-"}]}')
    assert m.apply({"x": "  c-1 "}) == {"a": "CRM-C-1"}


def test_rule_null_ends_pipeline_and_default_applies(mapping: Load) -> None:
    m = mapping('a: {from: x, transform: [trim, {nullif: ""}, upper], default: NONE}')
    assert m.apply({"x": "   "}) == {"a": "NONE"}


def test_rule_transform_failure_names_transform_not_value(mapping: Load) -> None:
    m = mapping("qty: {from: q, transform: [trim, int]}")
    with pytest.raises(MappingError) as caught:
        m.apply({"q": "12 boxes of SECRET"})
    assert "transform 'int' failed" in str(caught.value)
    assert "SECRET" not in str(caught.value)
    assert caught.value.rule == "qty"


def test_rule_value_map_with_default_and_non_text_keys(mapping: Load) -> None:
    m = mapping("""
        s: {from: stage, map: {won: CONFIRMED, lost: CANCELLED}, default: DRAFT}
        f: {from: flag, map: {"true": Y, "false": N}}
        n: {from: num, map: {"1": one}}
    """)
    assert m.apply({"stage": "won", "flag": True, "num": 1}) == {
        "s": "CONFIRMED", "f": "Y", "n": "one"}
    assert m.apply({"stage": "open"}) == {"s": "DRAFT"}


def test_rule_value_map_miss_without_default_fails(mapping: Load) -> None:
    with pytest.raises(MappingError, match="not in map"):
        mapping("s: {from: stage, map: {won: X}}").apply({"stage": "SECRET-STAGE"})


def test_rule_when_else(mapping: Load) -> None:
    m = mapping("""
        p: {when: "source.tier == 'gold'", value: HIGH, else: NORMAL}
        q: {when: "has(source.vip)", from: vip}
    """)
    assert m.apply({"tier": "gold", "vip": "y"}) == {"p": "HIGH", "q": "y"}
    assert m.apply({"tier": "iron"}) == {"p": "NORMAL"}


def test_rule_when_must_give_boolean(mapping: Load) -> None:
    with pytest.raises(MappingError, match="true or false"):
        mapping('p: {when: "source.tier", value: 1}').apply({"tier": "gold"})


def test_rule_expr_computes_value(mapping: Load) -> None:
    m = mapping('total: {expr: "double(qty) * price", transform: [{round: {digits: 2}}]}')
    assert m.apply({"qty": 3, "price": 0.1}) == {"total": 0.3}


def test_rule_expr_failure_is_mapping_error(mapping: Load) -> None:
    with pytest.raises(MappingError) as caught:
        mapping('total: {expr: "qty * price"}').apply({"qty": 3, "price": 0.1})
    assert caught.value.rule == "total"
    assert "overload" in str(caught.value)


def test_rule_each_maps_line_items_with_item_and_source(mapping: Load) -> None:
    m = mapping("""
        lines:
          each: items
          fields:
            sku: code
            qty: {from: n, transform: [int]}
            cur: {expr: "source.currency"}
            big: {expr: "int(item.n) > 5"}
    """)
    source = {"currency": "EUR", "items": [{"code": "A", "n": "2"}, {"code": "B", "n": 9}]}
    assert m.apply(source) == {"lines": [
        {"sku": "A", "qty": 2, "cur": "EUR", "big": False},
        {"sku": "B", "qty": 9, "cur": "EUR", "big": True}]}


def test_rule_each_error_names_item_rule(mapping: Load) -> None:
    m = mapping("lines: {each: items, fields: {qty: {from: n, transform: [int]}}}")
    with pytest.raises(MappingError) as caught:
        m.apply({"items": [{"n": "x"}]})
    assert caught.value.rule == "lines[].qty"


def test_rule_each_over_non_list_fails(mapping: Load) -> None:
    with pytest.raises(MappingError, match="expects a list"):
        mapping("l: {each: items, fields: {a: b}}").apply({"items": {"b": 1}})


def test_rule_each_missing_list_leaves_field_out_or_defaults(mapping: Load) -> None:
    assert mapping("l: {each: items, fields: {a: b}}").apply({}) == {}
    assert mapping("l: {each: items, fields: {a: b}, default: []}").apply({}) == {"l": []}


def test_rule_nested_object_and_dotted_target(mapping: Load) -> None:
    m = mapping("""
        address: {fields: {city: addr.city, zip: addr.postal_code}}
        contact.email: email
        empty: {fields: {x: nothing}}
    """)
    assert m.apply({"addr": {"city": "Berlin", "postal_code": "10115"}, "email": "e"}) == {
        "address": {"city": "Berlin", "zip": "10115"}, "contact": {"email": "e"}}


def test_rule_several_paths_give_a_list_for_join_and_coalesce(mapping: Load) -> None:
    m = mapping("""
        full: {from: [first, last], transform: [{join: " "}]}
        phone: {from: [mobile, landline], transform: [coalesce]}
    """)
    assert m.apply({"first": "Ada", "last": "Lovelace", "landline": "030"}) == {
        "full": "Ada Lovelace", "phone": "030"}


@pytest.mark.parametrize(
    ("on_missing", "expected"),
    [("passthrough", {"a": "C-404"}), ("default", {"a": "NEW"})],
)
def test_rule_lookup_miss_passthrough_and_default(
    mapping: Load, on_missing: str, expected: dict[str, Any]
) -> None:
    m = mapping(f"a: {{from: c, lookup: {{xref: crm.customer -> erp.account, "
                f"on_missing: {on_missing}}}, default: NEW}}")
    assert m.apply({"c": "C-404"}, lookup) == expected


@pytest.mark.parametrize(("on_missing", "retryable"), [("fail", False), ("retry", True)])
def test_rule_lookup_miss_fail_or_retry(mapping: Load, on_missing: str, retryable: bool) -> None:
    m = mapping(f"a: {{from: c, lookup: {{xref: crm.customer -> erp.account, "
                f"on_missing: {on_missing}}}}}")
    with pytest.raises(XrefMissing) as caught:
        m.apply({"c": "C-404"}, lookup)
    assert caught.value.retryable is retryable
    assert "C-404" not in str(caught.value)


def test_rule_lookup_hit_after_transforms(mapping: Load) -> None:
    m = mapping("a: {from: c, transform: [trim], lookup: {xref: crm.customer -> erp.account}}")
    assert m.apply({"c": " C-1 "}, lookup) == {"a": "A-7"}


def test_rule_lookup_without_store_is_a_clear_error(mapping: Load) -> None:
    with pytest.raises(MappingError, match="pass lookup"):
        mapping("a: {from: c, lookup: {xref: crm.customer -> erp.account}}").apply({"c": "C-1"})


def test_apply_refuses_non_object_source(mapping: Load) -> None:
    with pytest.raises(MappingError, match="JSON object"):
        mapping("a: x").apply([1, 2])  # type: ignore[arg-type]


def test_apply_is_pure_and_repeatable(mapping: Load) -> None:
    m = mapping('a: {from: x, transform: [upper]}\nl: {each: i, fields: {v: v}}')
    source = {"x": "a", "i": [{"v": 1}]}
    first = m.apply(source)
    assert m.apply(source) == first
    assert source == {"x": "a", "i": [{"v": 1}]}


def test_capture_returns_links_from_response(write: Callable[[str, str], Any]) -> None:
    from middleware.mapping import load_mapping

    m = load_mapping(write("""
        mapping: t
        fields: {name: name}
        capture:
          - {xref: crm.customer -> erp.account, source: customer_no, response: data.id}
    """, "c.yaml"))
    assert m.capture({"customer_no": "C-1"}, {"data": {"id": 77}}) == [
        ("crm.customer", "C-1", "erp.account", "77")]
    assert m.capture({"customer_no": "C-1"}, {"data": {}}) == []
    assert m.capture({"customer_no": "C-1"}, "plain text response") == []


def test_rule_single_inline_transform_failure_is_mapping_error(mapping: Load) -> None:
    m = mapping("ok: a\nqty: {from: q, transform: [int]}")
    with pytest.raises(MappingError) as caught:
        m.apply({"a": 1, "q": "SECRET-9"})
    assert (caught.value.rule, caught.value.path) == ("qty", "q")
    assert "transform 'int' failed" in str(caught.value)
    assert "SECRET" not in str(caught.value)
