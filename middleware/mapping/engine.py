"""Compile a mapping spec into plain Python closures, once; applying it only calls them.

Pure: no files, no clock, no store, no metrics. The cross-reference lookup arrives per call
inside ``Run``; the pipeline counts the misses that surface as ``XrefMissing``.
Copying a top-level field is a ``dict.get`` inside the object builder's loop, a deeper path one
getter call; transforms, maps, lookups and expressions are only paid for where written.
Problems are collected, not raised one by one, so a broken file is reported in one go.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from middleware.errors import MappingError, Problem
from middleware.mapping.expressions import Expression, ExpressionError
from middleware.mapping.functions import TransformSpecError, build_step, step_name
from middleware.mapping.paths import PathSyntaxError, compile_getter, compile_setter, parse_path
from middleware.mapping.spec import FieldRule
from middleware.mapping.stages import (
    ROOT,
    Lookup,
    Post,
    Rule,
    RuleCtx,
    Run,
    Stage,
    Steps,
    guarded,
    lookup_stage,
    map_stage,
    run_steps,
    stages_post,
    step_error,
    steps_post,
    steps_stage,
    then,
)

__all__ = ["Builder", "Lookup", "Run", "Where", "compile_rules", "parse_xref"]

Loc = tuple[str | int, ...]
Builder = Callable[[Any, Run], dict[str, Any]]
_SOURCES = {"from": "from_", "value": "value", "expr": "expr", "fields": "fields"}


class Where(Protocol):
    """Where a rule sits in its file (a ``Located``, or the reverse's view of one)."""

    file: str

    def line(self, path: Loc) -> int | None: ...

    def problem(self, path: Loc, message: str) -> Problem: ...


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
        """Build one target object; top-level key reads happen inline, without a call, and so
        does a single transform on them (its failure is translated here, by field name)."""
        entries = []
        failures: dict[str, tuple[RuleCtx, str]] = {}
        for name, rule in rules.items():
            try:
                setter = compile_setter(parse_path(name))
            except PathSyntaxError as exc:
                self.bad((*loc, name), f"bad target field name: {exc}")
                continue
            fn, inline = self.rule(rule, (*loc, name), prefix + name)
            key, post = inline.key, inline.post
            if inline.failure is not None:
                failures[name] = inline.failure
            entries.append((name, setter, key, post, fn))
        if all("." not in name and "[" not in name for name, *_ in entries):
            plain = tuple((name, key, post, fn) for name, _, key, post, fn in entries)

            def build(cur: Any, run: Run) -> dict[str, Any]:
                out: dict[str, Any] = {}
                get = cur.get if type(cur) is dict else _absent
                name = ""
                try:
                    for name, key, post, fn in plain:
                        if key is None:
                            value = fn(cur, run)
                        else:
                            value = get(key)
                            if post is not None and value is not None:
                                value = post(value)
                        if value is not None:
                            out[name] = value
                except MappingError:
                    raise
                except Exception as exc:
                    if name not in failures:
                        raise
                    raise step_error(*failures[name], exc) from None
                return out

            return build
        nested = tuple((setter, fn) for _, setter, _, _, fn in entries)

        def build_nested(cur: Any, run: Run) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for setter, fn in nested:
                value = fn(cur, run)
                if value is not None:
                    setter(out, value)
            return out

        return build_nested

    def rule(self, rule: FieldRule, loc: Loc, name: str) -> tuple[Rule, _Inline]:
        """The rule as a function, and how the builder may run it inline instead."""
        given = [k for k, attr in _SOURCES.items() if attr in rule.model_fields_set]
        if len(given) != 1:
            choice = "choose one of" if given else "add one of"
            self.bad(loc, f"{choice} from, value, expr, fields (or each + fields); "
                          f"found {', '.join(given) or 'none'}")
            return _none, _NOT_INLINE
        source = rule.each or (rule.from_ if isinstance(rule.from_, str) else None) or given[0]
        ctx = RuleCtx(self.mapping, name, str(source),
                      f"{self.where.file}:{self.where.line(loc) or '?'}")
        base = self.base(rule, loc, name, ctx)
        key = _direct_key(rule)
        if _plain(rule):
            return base, _Inline(key)
        steps = self.steps(rule, loc)
        post = self.post(rule, steps, ctx)
        if rule.when is None:
            if "else_" in rule.model_fields_set:
                self.bad((*loc, "else"), "else needs when: the condition it is the alternative "
                                         "to")
            if key is not None and _steps_only(rule) and rule.default is None:
                return then(base, post), _inline_steps(key, steps, ctx)
            return then(base, post), _NOT_INLINE
        cond = self.expression(rule.when, (*loc, "when"), "[]" in name)
        return guarded(then(base, post), cond, rule.else_, rule.default, rule.required,
                       ctx), _NOT_INLINE

    def base(self, rule: FieldRule, loc: Loc, name: str, ctx: RuleCtx) -> Rule:
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
            expr = self.expression(rule.expr, (*loc, "expr"), "[]" in name)

            def compute(cur: Any, run: Run) -> Any:
                try:
                    return expr.evaluate(cur, run[ROOT])
                except ExpressionError as exc:
                    raise ctx.error(str(exc)) from None

            return compute
        const = rule.value
        return lambda cur, run: const

    def nested(self, rule: FieldRule, loc: Loc, name: str, ctx: RuleCtx) -> Rule:
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
            return [build(item, run) for item in found]

        return each

    def post(self, rule: FieldRule, steps: Steps, ctx: RuleCtx) -> Post:
        """What follows the read: transforms, map, lookup (backwards in a reverse), default,
        required."""
        if steps and _steps_only(rule):
            return steps_post(steps, rule.default, ctx)
        stages: list[Stage] = []
        if steps:
            stages.append(steps_stage(steps, ctx))
        if rule.map is not None:
            stages.append(map_stage(rule.map, rule.default is not None, ctx))
        if rule.lookup is not None:
            from_ns, to_ns = parse_xref(rule.lookup.xref)
            stages.append(lookup_stage(from_ns, to_ns, rule.lookup.on_missing, ctx))
        if self.reverse:
            stages.reverse()
        return stages_post(stages, rule.default, rule.required, ctx)

    def steps(self, rule: FieldRule, loc: Loc) -> Steps:
        steps = []
        for i, spec in enumerate(rule.transform):
            try:
                steps.append((step_name(spec), build_step(spec)))
            except TransformSpecError as exc:
                self.bad((*loc, "transform", i), str(exc))
        return tuple(steps)

    def getter(self, path: str, loc: Loc) -> Callable[..., Any]:
        try:
            return compile_getter(parse_path(path))
        except PathSyntaxError as exc:
            self.bad(loc, str(exc))
            return _none

    def expression(self, text: str, loc: Loc, in_item: bool) -> Expression:
        try:
            return Expression(text, in_item)
        except ExpressionError as exc:
            self.bad(loc, str(exc))
            return Expression("null")


def _none(cur: Any, run: Any = None) -> None:
    return None


def _absent(key: str) -> None:
    """``get`` of something that is not a dict: every key is absent."""
    return None


@dataclass(frozen=True)
class _Inline:
    """How the object builder may run a rule itself: read ``key``, then call ``post`` on a
    non-null value; ``failure`` names the rule and step when post is a bare transform."""

    key: str | None = None
    post: Callable[[Any], Any] | None = None
    failure: tuple[RuleCtx, str] | None = None


_NOT_INLINE = _Inline()


def _inline_steps(key: str, steps: Steps, ctx: RuleCtx) -> _Inline:
    if not steps:
        return _NOT_INLINE
    if len(steps) == 1:
        ((name, step),) = steps
        return _Inline(key, step, (ctx, name))
    return _Inline(key, lambda value: run_steps(steps, value, ctx))


def _steps_only(rule: FieldRule) -> bool:
    return rule.map is None and rule.lookup is None and not rule.required


def _plain(rule: FieldRule) -> bool:
    """True when the rule only produces its value: no stage, condition or check after it."""
    return not (rule.transform or rule.map is not None or rule.lookup or rule.when
                or rule.required or rule.default is not None
                or "else_" in rule.model_fields_set)


def _direct_key(rule: FieldRule) -> str | None:
    """The key of a one-level read without condition, which the builder does inline."""
    if rule.when is not None or not isinstance(rule.from_, str) or rule.each or rule.fields:
        return None
    try:
        keys = parse_path(rule.from_)
    except PathSyntaxError:
        return None
    return keys[0] if len(keys) == 1 and isinstance(keys[0], str) else None
