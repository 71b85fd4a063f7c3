"""Derive the reverse of a mapping, so one file serves CRM -> ERP and ERP -> CRM.

The reverse is built at the spec level, then compiled like any mapping (with stages run in
reverse order). Paths swap sides; transforms are undone in reverse order through each one's
declared inverse; value maps are inverted (they must be one-to-one); xref lookups swap their
namespaces. Constants carry no source data and are skipped; defaults are dropped because the
reverse cannot tell a default from a real value. Anything else (expressions, conditions, several
source paths, a transform without an inverse) is refused, naming the rule, unless the rule says
``reverse: false``. Runtime errors of the reverse point at the original rule's line.
"""

from __future__ import annotations

from typing import Any

from middleware.errors import Problem
from middleware.mapping.engine import Loc, Where, parse_xref
from middleware.mapping.functions import TransformSpecError, inverse_step, step_name, to_text
from middleware.mapping.paths import PathSyntaxError, format_path, parse_path
from middleware.mapping.spec import FieldRule, MappingSpec
from middleware.yamlfile import dotted

__all__ = ["ReverseWhere", "reverse_spec"]

_HINT = "; mark the field 'reverse: false' or write a separate mapping for the other direction"


class ReverseWhere:
    """Locates rules of the derived reverse at the lines of the forward rules they came from."""

    def __init__(self, forward: Where, origin: dict[Loc, Loc]) -> None:
        self.file = forward.file
        self._forward = forward
        self._origin = origin

    def _original(self, path: Loc) -> Loc:
        parts = tuple(path)
        while parts and parts not in self._origin:
            parts = parts[:-1]
        return self._origin.get(parts, ())

    def line(self, path: Loc) -> int | None:
        return self._forward.line(self._original(path))

    def problem(self, path: Loc, message: str) -> Problem:
        return self._forward.problem(self._original(path), message)


def reverse_spec(spec: MappingSpec, where: Where) -> tuple[MappingSpec, ReverseWhere,
                                                           list[Problem]]:
    """The reverse spec, where its rules came from, and why it cannot be derived (if so)."""
    builder = _Reverser(where)
    fields = builder.rules(spec.fields, ("fields",), "", ("fields",))
    reverse = MappingSpec.model_validate({
        "mapping": f"{spec.mapping}.reverse",
        "description": f"Derived reverse of {spec.mapping}",
        "source": spec.target.model_dump(by_alias=True),
        "target": spec.source.model_dump(by_alias=True),
        "fields": fields,
    })
    return reverse, ReverseWhere(where, builder.origin), builder.problems


class _Reverser:
    def __init__(self, where: Where) -> None:
        self.where = where
        self.problems: list[Problem] = []
        self.origin: dict[Loc, Loc] = {}

    def bad(self, loc: Loc, message: str) -> None:
        self.problems.append(self.where.problem(loc, message + _HINT))

    def rules(self, rules: dict[str, FieldRule], loc: Loc, prefix: str,
              out_loc: Loc) -> dict[str, Any]:
        """Reverse a rules block; prefix is the target path of the enclosing nested object."""
        out: dict[str, Any] = {}
        owner: dict[str, str] = {}
        for key, value, origin in self.entries(rules, loc, prefix, out_loc):
            if key in out:
                self.bad(origin, f"reverse: source path {key!r} would be filled by both "
                                 f"{owner[key]!r} and {dotted(origin)!r}")
                continue
            out[key], owner[key] = value, dotted(origin)
        return out

    def entries(self, rules: dict[str, FieldRule], loc: Loc, prefix: str,
                out_loc: Loc) -> list[tuple[str, Any, Loc]]:
        found = []
        for name, rule in rules.items():
            found.extend(self.rule(rule, (*loc, name), prefix + name, out_loc))
        return found

    def rule(self, rule: FieldRule, loc: Loc, target: str,
             out_loc: Loc) -> list[tuple[str, Any, Loc]]:
        if not rule.reverse or "value" in rule.model_fields_set:
            return []
        if rule.expr is not None or rule.when is not None:
            self.bad(loc, f"rule {dotted(loc)!r} computes its value (expr/when) and has no "
                          f"reverse")
            return []
        if rule.fields is not None and rule.each is None:
            return self.entries(rule.fields, (*loc, "fields"), target + ".", out_loc)
        source = rule.each if rule.each is not None else rule.from_
        if not isinstance(source, str):
            self.bad(loc, f"rule {dotted(loc)!r} reads several source paths and has no reverse")
            return []
        key = _normal(source)
        self.origin[(*out_loc, key)] = loc
        if rule.fields is not None:
            inner = self.rules(rule.fields, (*loc, "fields"), "", (*out_loc, key, "fields"))
            return [(key, {"each": target, "fields": inner, "required": rule.required}, loc)]
        reverse: dict[str, Any] = {"from": target, "required": rule.required}
        steps = self.steps(rule, loc)
        if steps:
            reverse["transform"] = steps
        if rule.map is not None:
            reverse["map"] = self.value_map(rule.map, loc)
        if rule.lookup is not None:
            from_ns, to_ns = parse_xref(rule.lookup.xref)
            on_missing = rule.lookup.on_missing
            reverse["lookup"] = {"xref": f"{to_ns} -> {from_ns}",
                                 "on_missing": "fail" if on_missing == "default" else on_missing}
        return [(key, reverse, loc)]

    def steps(self, rule: FieldRule, loc: Loc) -> list[Any]:
        undone = []
        for i in reversed(range(len(rule.transform))):
            spec = rule.transform[i]
            try:
                inverse = inverse_step(spec)
            except TransformSpecError as exc:
                self.bad((*loc, "transform", i), str(exc))
                continue
            if inverse is None:
                self.bad((*loc, "transform", i),
                         f"transform {step_name(spec)!r} in rule {dotted(loc)!r} has no inverse")
                continue
            undone.append(inverse)
        return undone

    def value_map(self, table: dict[str, Any], loc: Loc) -> dict[str, str]:
        inverted: dict[str, str] = {}
        for key, value in table.items():
            if isinstance(value, dict | list) or value is None:
                self.bad((*loc, "map", key), "only text and number map values can be reversed")
                continue
            text = to_text(value)
            if text in inverted:
                self.bad((*loc, "map", key), f"map in rule {dotted(loc)!r} is not one-to-one: "
                                             f"{inverted[text]!r} and {key!r} both give {text!r}")
                continue
            inverted[text] = key
        return inverted


def _normal(path: str) -> str:
    try:
        return format_path(parse_path(path))
    except PathSyntaxError:
        return path
