"""Computed values and conditions in CEL (Common Expression Language).

CEL is specified, sandboxed (no I/O, no loops without bounds) and fast once compiled, which is
why mappings use it instead of ``eval`` or a language of our own. Programs compile once at load.
Per evaluation we hand CEL only the variables the program names: converting a whole payload into
CEL values costs far more than the expression itself.

Variables: ``source`` is the whole source payload; ``item`` is the current line inside ``each``;
the fields of the current object (the payload at top level, the line inside ``each``) are also
available by their bare names.
"""

from __future__ import annotations

import re
from typing import Any

from middleware.celengine import cel

__all__ = ["Expression", "ExpressionError", "from_cel"]

_RESERVED = frozenset({"source", "item"})
_UNDEFINED = re.compile(r"Undefined variable or function: '(\w+)'")


class ExpressionError(ValueError):
    """An expression failed to compile (load time) or to evaluate (run time)."""


class Expression:
    """One compiled CEL program and the variable names it reads."""

    __slots__ = ("_names", "_program", "_wants_item", "_wants_source", "text")

    def __init__(self, text: str, in_item: bool = False) -> None:
        """Compile text; ``in_item`` says the expression runs inside ``each`` (binds item)."""
        try:
            self._program = cel.compile(text)
        except (ValueError, RuntimeError) as exc:
            raise ExpressionError(f"invalid CEL expression: {_first_line(exc)}") from None
        self.text = text
        names = set(self._program.variables())
        self._wants_source = "source" in names
        self._wants_item = in_item and "item" in names
        self._names = tuple(sorted(names - _RESERVED))

    def evaluate(self, current: Any, root: Any) -> Any:
        """Run the program; the message of a failure names the error kind, never a value."""
        variables: dict[str, Any] = {}
        if isinstance(current, dict):
            for name in self._names:
                if name in current:
                    variables[name] = current[name]
        if self._wants_source:
            variables["source"] = root
        if self._wants_item:
            variables["item"] = current
        try:
            return from_cel(self._program.execute(variables))
        except Exception as exc:
            raise ExpressionError(f"expression failed ({_kind(exc)})") from None


def from_cel(value: Any) -> Any:
    """CEL results to plain Python: unwrap optionals, recursively; everything else is native."""
    if isinstance(value, cel.OptionalValue):
        return from_cel(value.value()) if value.has_value() else None
    if isinstance(value, list):
        return [from_cel(v) for v in value]
    if isinstance(value, dict):
        return {k: from_cel(v) for k, v in value.items()}
    return value


def _kind(exc: Exception) -> str:
    """A value-free description of a CEL failure."""
    undefined = _UNDEFINED.search(str(exc))
    if undefined:  # the name comes from the expression text, not from the payload
        return (f"{undefined.group(1)!r} is neither a field of the payload nor a CEL function; "
                f"guard optional fields with has(item.x) or has(source.x)")
    kinds = {
        KeyError: "a map key is missing; guard it with has(...)",
        TypeError: "no such overload: convert types explicitly with int(), double(), string()",
        ZeroDivisionError: "division by zero",
        IndexError: "list index out of range",
    }
    for kind, text in kinds.items():
        if isinstance(exc, kind):
            return text
    return type(exc).__name__


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split("\n")[:2])
