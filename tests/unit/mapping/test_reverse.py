"""Derived reverse mappings: what inverts, what is refused, and the scenario 1 round trip."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from middleware.errors import ConfigError, MappingError
from middleware.mapping import Mapping, load_mapping

Load = Callable[[str], Mapping]
ROOT = Path(__file__).parents[3] / "mappings"
LINKS = {("crm.customer", "C-1001", "erp.account"): "A-77",
         ("erp.account", "A-77", "crm.customer"): "C-1001"}


def lookup(from_ns: str, key: str, to_ns: str) -> str | None:
    return LINKS.get((from_ns, key, to_ns))


def test_reverse_scenario_1_maps_back_to_the_original_input() -> None:
    # Given the CRM sample customer and the scenario 1 mapping
    forward = load_mapping(ROOT / "crm-erp" / "customer-to-account.yaml")
    original = json.loads((ROOT / "samples" / "crm-customer.json").read_text())
    # When it goes to the ERP and back through the derived reverse
    account = forward.apply(original, lookup)
    forward.validate_target(account)
    back = forward.reverse().apply(account, lookup)
    # Then the CRM sees exactly what it sent
    forward.reverse().validate_target(back)
    assert back == original


def test_reverse_swaps_schemas_and_names_itself() -> None:
    forward = load_mapping(ROOT / "crm-erp" / "customer-to-account.yaml")
    reverse = forward.reverse()
    assert reverse.name == "crm-customer-to-erp-account.reverse"
    assert reverse.spec.source.schema_ == forward.spec.target.schema_
    assert forward.reverse() is reverse


def test_reverse_inverts_paths_prefix_map_and_nesting(mapping: Load) -> None:
    m = mapping("""
        code: {from: customer.no, transform: [trim, {prefix: "CRM-"}], reverse: false}
        id: {from: customer.no, transform: [upper, {prefix: "CRM-"}]}
        status: {from: stage, map: {won: CONFIRMED, lost: CANCELLED}}
        address: {fields: {city: addr.city}}
        lines: {each: items, fields: {sku: {from: code, transform: [{suffix: "-X"}]}}}
        kind: {value: ORDER}
    """)
    source = {"customer": {"no": "c-1"}, "stage": "lost", "addr": {"city": "Berlin"},
              "items": [{"code": "a"}, {"code": "b"}]}
    assert m.reverse().apply(m.apply(source)) == source


def test_reverse_runs_stages_backwards_lookup_first(mapping: Load) -> None:
    m = mapping("a: {from: c, transform: [{strip_prefix: 'crm:'}], "
                "lookup: {xref: crm.customer -> erp.account}}")
    assert m.apply({"c": "crm:C-1001"}, lookup) == {"a": "A-77"}
    assert m.reverse().apply({"a": "A-77"}, lookup) == {"c": "crm:C-1001"}


def test_reverse_of_timezone_restores_the_instant(mapping: Load) -> None:
    m = mapping("""
        t:
          from: at
          transform:
            - {parse_datetime: iso8601}
            - {timezone: {from: UTC, to: America/New_York}}
            - {format_datetime: "%Y-%m-%dT%H:%M:%S%z"}
    """)
    source = {"at": "2024-11-03T05:30:00+00:00"}  # inside the US autumn fold
    assert m.apply(source) == {"t": "2024-11-03T01:30:00-0400"}
    assert m.reverse().apply(m.apply(source)) == source


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ('a: {expr: "x + 1"}', "computes its value"),
        ('a: {when: "true", from: x}', "computes its value"),
        ("a: {from: [x, y], transform: [concat]}", "several source paths"),
        ("a: {from: x, transform: [trim]}", "transform 'trim' in rule 'fields.a' has no inverse"),
        ("a: {from: x, map: {p: Q, r: Q}}", "not one-to-one"),
        ("a: {from: x, transform: [{timezone: {to: UTC}}]}", "without 'from'"),
        ("a: x\nb: x", "would be filled by both"),
    ],
)
def test_reverse_refuses_non_invertible_rule_naming_it(
    mapping: Load, rule: str, message: str
) -> None:
    m = mapping(rule)
    with pytest.raises(ConfigError) as caught:
        m.reverse()
    problem = caught.value.problems[0]
    assert message in problem.message
    assert "reverse: false" in problem.message
    assert problem.line is not None and problem.file.endswith("m.yaml")


def test_reverse_runtime_error_points_at_forward_rule_line(mapping: Load) -> None:
    m = mapping("""
        first: a
        status: {from: stage, map: {won: CONFIRMED}}
    """)
    with pytest.raises(MappingError) as caught:
        m.reverse().apply({"status": "UNKNOWN"})
    assert "m.yaml:4" in str(caught.value)
    assert caught.value.rule == "stage"


def test_reverse_lookup_swaps_namespaces_and_keeps_retry(mapping: Load) -> None:
    m = mapping("a: {from: c, lookup: {xref: crm.customer -> erp.account, on_missing: retry}}")
    reverse = m.reverse()
    assert reverse.spec.fields["c"].lookup is not None
    assert reverse.spec.fields["c"].lookup.xref == "erp.account -> crm.customer"
    assert reverse.spec.fields["c"].lookup.on_missing == "retry"
