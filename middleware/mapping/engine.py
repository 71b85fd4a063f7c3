"""Compile a mapping spec into plain Python closures, once; applying it only calls them.

Pure: no files, no clock, no store, no metrics. The cross-reference lookup arrives per call
inside ``Run``; the pipeline counts the misses that surface as ``XrefMissing``.
A rule that is just ``from: path`` compiles to the path getter itself, so copying a field costs
one ``dict.get``; transforms, maps, lookups and expressions are only paid for where written.
Problems are collected, not raised one by one, so a broken file is reported in one go.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from middleware.errors import MappingError, Problem, XrefMissing
from middleware.mapping.expressions import Expression, ExpressionError
from middleware.mapping.functions import (
    StepError,
    TransformSpecError,
    build_step,
    step_name,
    to_text,
)
from middleware.mapping.paths import PathSyntaxError, compile_getter, compile_setter, parse_path
from middleware.mapping.spec import FieldRule

__all__ = ["Builder", "Lookup", "Run", "Where", "compile_rules", "parse_xref"]

Lookup = Callable[[str, str, str], str | None]
Loc = tuple[str | int, ...]
Rule = Callable[[Any, "Run"], Any]
Builder = Callable[[Any, "Run"], dict[str, Any]]
Stage = Callable[[Any, "Run"], Any]
_MISS = object()
_SOURCES = {"from": "from_", "value": "value", "expr": "expr", "fields": "fields"}


class Where(Protocol):
    """Where a rule sits in its file (a ``Located``, or the reverse's view of one)."""

    file: str

    def line(self, path: Loc) -> int | None: ...

    def problem(self, path: Loc, message: str) -> Problem: ...


class Run:
    """Per-call state: the whole payload, the xref lookup, and whether we are inside each."""

    __slots__ = ("in_item", "lookup", "root")

    def __init__(self, root: Any, lookup: Lookup | None, in_item: bool = False) -> None:
        self.root = root
        self.lookup = lookup
        self.in_item = in_item


@dataclass(frozen=True)
class _Ctx:
    """Names a rule in runtime errors: mapping, rule path, file:line and source path."""

    mapping: str
    rule: str
    source: str
    where: str

    def error(self, what: str, cls: type[MappingError] = MappingError,
              retryable: bool | None = None) -> MappingError:
        return cls(
            f"mapping {self.mapping!r}, rule {self.rule!r} ({self.where}, from {self.source!r}): "
            f"{what}",
            mapping=self.mapping, rule=self.rule, path=self.source, retryable=retryable,
        )


def parse_xref(text: str) -> tuple[str, str]:
    """'crm.customer -> erp.account' -> ('crm.customer', 'erp.account')."""
    left, _, right = text.partition("->")
    return left.strip(), right.strip()


def compile_rules(
    mapping: str, rules: dict[str, FieldRule], where: Where, reverse: bool = False
) -> tuple[Builder, list[Problem]]:
    """The root builder of a mapping, and every problem found while compiling it.

    ``reverse`` runs each rule's stages backwards (lookup, map, transforms), which is what a
    derived reverse mapping needs to undo ``transform -> map -> lookup``.
    """
    problems: list[Problem] = []
    builder = _Compiler(mapping, where, problems, reverse).object(rules, ("fields",), "")
    return builder, problems


class _Compiler:
    def __init__(self, mapping: str, where: Where, problems: list[Problem],
                 reverse: bool) -> None:
        self.mapping = mapping
        self.where = where
        self.problems = problems
        self.reverse = reverse

    def bad(self, loc: Loc, message: str) -> None:
        self.problems.append(self.where.problem(loc, message))

    def object(self, rules: dict[str, FieldRule], loc: Loc, prefix: str) -> Builder:
        entries: list[tuple[Callable[[dict[str, Any], Any], None], str, Rule]] = []
        for name, rule in rules.items():
            try:
                setter = compile_setter(parse_path(name))
            except PathSyntaxError as exc:
                self.bad((*loc, name), f"bad target field name: {exc}")
                continue
            entries.append((setter, name, self.rule(rule, (*loc, name), prefix + name)))
        if all("." not in name and "[" not in name for _, name, _ in entries):
            plain = tuple((name, fn) for _, name, fn in entries)

            def build(cur: Any, run: Run) -> dict[str, Any]:
                out: dict[str, Any] = {}
                for name, fn in plain:
                    value = fn(cur, run)
                    if value is not None:
                        out[name] = value
                return out

            return build
        nested = tuple((setter, fn) for setter, _, fn in entries)

        def build_nested(cur: Any, run: Run) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for setter, fn in nested:
                value = fn(cur, run)
                if value is not None:
                    setter(out, value)
            return out

        return build_nested

    def rule(self, rule: FieldRule, loc: Loc, name: str) -> Rule:
        given = [k for k, attr in _SOURCES.items() if attr in rule.model_fields_set]
        if len(given) != 1:
            choice = "choose one of" if given else "add one of"
            self.bad(loc, f"{choice} from, value, expr, fields (or each + fields); "
                          f"found {', '.join(given) or 'none'}")
            return _none
        source = rule.each or (rule.from_ if isinstance(rule.from_, str) else None) or given[0]
        ctx = _Ctx(self.mapping, name, str(source),
                   f"{self.where.file}:{self.where.line(loc) or '?'}")
        base = self.base(rule, loc, name, ctx)
        plain = not (rule.transform or rule.map is not None or rule.lookup or rule.when
                     or rule.required or rule.default is not None or "else_" in
                     rule.model_fields_set)
        if plain:
            return base
        return self.pipeline(rule, loc, ctx, base)

    def base(self, rule: FieldRule, loc: Loc, name: str, ctx: _Ctx) -> Rule:
        if rule.fields is not None:
            if rule.transform or rule.map is not None or rule.lookup:
                self.bad(loc, "transform, map and lookup apply to single values; "
                              "put them on the nested fields")
            return self.nested(rule, loc, name, ctx)
        if rule.each is not None:
            self.bad((*loc, "each"), "each needs fields: the rules for one item")
        if isinstance(rule.from_, list):
            getters = tuple(self.getter(p, (*loc, "from", i)) for i, p in enumerate(rule.from_))
            return lambda cur, run: [get(cur) for get in getters]
        if rule.from_ is not None:
            return self.getter(rule.from_, (*loc, "from"))
        if rule.expr is not None:
            expr = self.expression(rule.expr, (*loc, "expr"))

            def compute(cur: Any, run: Run) -> Any:
                try:
                    return expr.evaluate(cur, run.root, run.in_item)
                except ExpressionError as exc:
                    raise ctx.error(str(exc)) from None

            return compute
        const = rule.value
        return lambda cur, run: const

    def nested(self, rule: FieldRule, loc: Loc, name: str, ctx: _Ctx) -> Rule:
        assert rule.fields is not None
        if rule.each is None:
            inner = self.object(rule.fields, (*loc, "fields"), name + ".")
            return lambda cur, run: inner(cur, run) or None
        items = self.getter(rule.each, (*loc, "each"))
        build = self.object(rule.fields, (*loc, "fields"), name + "[].")

        def each(cur: Any, run: Run) -> Any:
            found = items(cur)
            if found is None:
                return None
            if not isinstance(found, list):
                raise ctx.error("each expects a list at the source path")
            item_run = Run(run.root, run.lookup, True)
            return [build(item, item_run) for item in found]

        return each

    def pipeline(self, rule: FieldRule, loc: Loc, ctx: _Ctx, base: Rule) -> Rule:
        has_default = rule.default is not None
        stages = [s for s in (self.transforms(rule, loc, ctx), _value_map(rule, ctx),
                              self.lookup(rule, loc, ctx)) if s is not None]
        if self.reverse:
            stages.reverse()
        cond = None if rule.when is None else self.expression(rule.when, (*loc, "when"))
        if "else_" in rule.model_fields_set and cond is None:
            self.bad((*loc, "else"), "else needs when: the condition it is the alternative to")
        otherwise, default, required = rule.else_, rule.default, rule.required

        def apply(cur: Any, run: Run) -> Any:
            if cond is not None and not _holds(cond, cur, run, ctx):
                value = otherwise
            else:
                value = base(cur, run)
                for stage in stages:
                    if value is None:
                        break
                    value = stage(value, run)
            if value is None:
                if required and not has_default:
                    raise ctx.error("required value is missing or null")
                return default
            return value

        return apply

    def transforms(self, rule: FieldRule, loc: Loc, ctx: _Ctx) -> Stage | None:
        steps = []
        for i, spec in enumerate(rule.transform):
            try:
                steps.append((step_name(spec), build_step(spec)))
            except TransformSpecError as exc:
                self.bad((*loc, "transform", i), str(exc))
        if not steps:
            return None
        frozen = tuple(steps)
        return lambda value, run: _run_steps(frozen, value, ctx)

    def lookup(self, rule: FieldRule, loc: Loc, ctx: _Ctx) -> Stage | None:
        """Xref stage; a miss becomes None for 'default' so the field default (or absence)
        applies, exactly as for a missing source value."""
        if rule.lookup is None:
            return None
        from_ns, to_ns = parse_xref(rule.lookup.xref)
        on_missing = rule.lookup.on_missing

        def look(value: Any, run: Run) -> Any:
            if run.lookup is None:
                raise ctx.error("this rule needs the cross-reference store; pass lookup=")
            found = run.lookup(from_ns, to_text(value), to_ns)
            if found is not None:
                return found
            if on_missing == "passthrough":
                return value
            if on_missing == "default":
                return None
            raise ctx.error(f"no {to_ns} linked to this {from_ns} (on_missing: {on_missing})",
                            XrefMissing, retryable=on_missing == "retry")

        return look

    def getter(self, path: str, loc: Loc) -> Callable[..., Any]:
        try:
            return compile_getter(parse_path(path))
        except PathSyntaxError as exc:
            self.bad(loc, str(exc))
            return _none

    def expression(self, text: str, loc: Loc) -> Expression:
        try:
            return Expression(text)
        except ExpressionError as exc:
            self.bad(loc, str(exc))
            return Expression("null")


def _none(cur: Any, run: Any = None) -> None:
    return None


def _value_map(rule: FieldRule, ctx: _Ctx) -> Stage | None:
    """Map stage; keys are text, so source values are looked up by their text form."""
    if rule.map is None:
        return None
    table, has_default = rule.map, rule.default is not None

    def map_value(value: Any, run: Run) -> Any:
        found = table.get(value if type(value) is str else to_text(value), _MISS)
        if found is _MISS:
            if has_default:
                return None
            raise ctx.error("value not in map; add it to map or set a default")
        return found

    return map_value


def _holds(cond: Expression, cur: Any, run: Run, ctx: _Ctx) -> bool:
    try:
        result = cond.evaluate(cur, run.root, run.in_item)
    except ExpressionError as exc:
        raise ctx.error(f"condition: {exc}") from None
    if not isinstance(result, bool):
        raise ctx.error("condition must give true or false")
    return result


def _run_steps(steps: tuple[tuple[str, Callable[[Any], Any]], ...], value: Any,
               ctx: _Ctx) -> Any:
    name = ""
    try:
        for name, step in steps:  # noqa: B007 (the handlers below report name)
            value = step(value)
            if value is None:
                return None
    except StepError as exc:
        raise ctx.error(f"transform {name!r} failed: {exc}") from None
    except Exception as exc:
        raise ctx.error(f"transform {name!r} failed ({type(exc).__name__}); check the "
                        f"value's type and format") from None
    return value
