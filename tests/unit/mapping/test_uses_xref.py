"""Mapping.uses_xref: whether applying a mapping may call the store (then not on a loop)."""

from __future__ import annotations

from collections.abc import Callable

from middleware.mapping import Mapping


def test_mapping_uses_xref_is_false_for_plain_rules(mapping: Callable[[str], Mapping]) -> None:
    plain = mapping("""
        id: {from: customer_no, transform: [upper]}
        lines: {each: items, fields: {sku: {from: code}}}
    """)
    assert plain.uses_xref is False


def test_mapping_uses_xref_sees_a_lookup_at_any_depth_and_in_the_reverse(
    mapping: Callable[[str], Mapping],
) -> None:
    nested = mapping("""
        order: {from: id}
        lines:
          each: items
          fields:
            account: {from: customer, lookup: {xref: crm.customer -> erp.account}}
    """)
    assert nested.uses_xref is True
    top = mapping("account: {from: customer_no, lookup: {xref: crm.customer -> erp.account}}")
    assert top.uses_xref is True
    assert top.reverse().uses_xref is True
