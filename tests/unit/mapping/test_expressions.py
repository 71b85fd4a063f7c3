from __future__ import annotations

import cel
import pytest

from middleware.mapping.expressions import Expression, ExpressionError, from_cel


def test_expression_reads_bare_fields_source_and_item() -> None:
    expr = Expression("double(qty) * item.price + double(size(source.lines))", in_item=True)
    item = {"qty": 2, "price": 1.5}
    assert expr.evaluate(item, {"lines": [item, item]}) == 5.0


def test_expression_passes_only_referenced_variables() -> None:
    expr = Expression("has(source.x) ? 1 : 2")
    assert expr.evaluate({"other": object()}, {"x": 0}) == 1


def test_expression_item_is_unbound_outside_each() -> None:
    with pytest.raises(ExpressionError, match="'item'"):
        Expression("item.a").evaluate({"a": 1}, {"a": 1})


def test_expression_compile_error_is_reported_at_load() -> None:
    with pytest.raises(ExpressionError, match="invalid CEL expression"):
        Expression("source.tier ==")


@pytest.mark.parametrize(
    ("text", "variables", "hint"),
    [
        ("a + 'x'", {"a": 1}, "no such overload"),
        ("1 / a", {"a": 0}, "division by zero"),
        ("a[5]", {"a": [1]}, "index out of range"),
        ("missing + 1", {}, "'missing' is neither a field"),
        ("source.secret_field.x", {}, "has(...)"),
    ],
)
def test_expression_runtime_error_names_kind_not_value(
    text: str, variables: dict[str, object], hint: str
) -> None:
    payload = {**variables, "secret_field": {"y": "TOP-SECRET"}}
    with pytest.raises(ExpressionError) as caught:
        Expression(text).evaluate(payload, payload)
    assert hint in str(caught.value)
    assert "TOP-SECRET" not in str(caught.value)


def test_from_cel_unwraps_optionals_recursively() -> None:
    value = {"a": [cel.OptionalValue.of(1), cel.OptionalValue.none()]}
    assert from_cel(value) == {"a": [1, None]}
