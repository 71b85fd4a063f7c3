"""The value stages of one rule: transforms, value map, xref lookup, and their composition.

Split from the compiler so each closure here can be read on its own. Closures are specialised at
compile time (a rule that only transforms gets a loop over its steps and nothing else) because
the per-field overhead decides whether a compiled mapping keeps up with hand-written code.
Runtime errors name mapping, rule, file:line and source path, never the value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from middleware.errors import MappingError, XrefMissing
from middleware.mapping.expressions import Expression, ExpressionError
from middleware.mapping.functions import StepError, to_text

__all__ = [
    "LOOKUP",
    "ROOT",
    "Lookup",
    "Post",
    "Rule",
    "RuleCtx",
    "Run",
    "Stage",
    "Steps",
    "guarded",
    "lookup_stage",
    "map_stage",
    "run_steps",
    "stages_post",
    "step_error",
    "steps_post",
    "steps_stage",
    "then",
]

Lookup = Callable[[str, str, str], str | None]
Rule = Callable[[Any, "Run"], Any]
Stage = Callable[[Any, "Run"], Any]
Post = Callable[[Any, "Run"], Any]
Steps = tuple[tuple[str, Callable[[Any], Any]], ...]
_MISS = object()


# Per-call state, (root payload, xref lookup): a plain tuple because one is made per apply.
Run = tuple[Any, Lookup | None]
ROOT, LOOKUP = 0, 1


@dataclass(frozen=True)
class RuleCtx:
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


def steps_stage(steps: Steps, ctx: RuleCtx) -> Stage:
    """The transform pipeline as one stage among others (map, lookup)."""
    return lambda value, run: run_steps(steps, value, ctx)


def steps_post(steps: Steps, default: Any, ctx: RuleCtx) -> Post:
    """Transforms then default: the most common rule after plain copies, so kept lean."""
    if len(steps) == 1:
        ((name, step),) = steps

        def one_step(value: Any, run: Run) -> Any:
            if value is not None:
                try:
                    value = step(value)
                except Exception as exc:
                    raise step_error(ctx, name, exc) from None
            return default if value is None else value

        return one_step

    def many_steps(value: Any, run: Run) -> Any:
        if value is not None:
            value = run_steps(steps, value, ctx)
        return default if value is None else value

    return many_steps


def stages_post(stages: list[Stage], default: Any, required: bool, ctx: RuleCtx) -> Post:
    """Stages in order; a null ends them; then the default, then the required check."""

    def post(value: Any, run: Run) -> Any:
        for stage in stages:
            if value is None:
                break
            value = stage(value, run)
        if value is None:
            if required and default is None:
                raise ctx.error("required value is missing or null")
            return default
        return value

    return post


def then(base: Rule, post: Post) -> Rule:
    """A rule reading its value with base and finishing it with post."""
    return lambda cur, run: post(base(cur, run), run)


def map_stage(table: dict[str, Any], has_default: bool, ctx: RuleCtx) -> Stage:
    """Value map; keys are text, so source values are looked up by their text form."""

    def map_value(value: Any, run: Run) -> Any:
        found = table.get(value if type(value) is str else to_text(value), _MISS)
        if found is _MISS:
            if has_default:
                return None
            raise ctx.error("value not in map; add it to map or set a default")
        return found

    return map_value


def lookup_stage(from_ns: str, to_ns: str, on_missing: str, ctx: RuleCtx) -> Stage:
    """Xref stage; a miss becomes None for 'default' so the field default (or absence)
    applies, exactly as for a missing source value."""

    def look(value: Any, run: Run) -> Any:
        lookup = run[LOOKUP]
        if lookup is None:
            raise ctx.error("this rule needs the cross-reference store; pass lookup=")
        found = lookup(from_ns, to_text(value), to_ns)
        if found is not None:
            return found
        if on_missing == "passthrough":
            return value
        if on_missing == "default":
            return None
        raise ctx.error(f"no {to_ns} linked to this {from_ns} (on_missing: {on_missing})",
                        XrefMissing, retryable=on_missing == "retry")

    return look


def guarded(rule: Rule, cond: Expression, otherwise: Any, default: Any, required: bool,
            ctx: RuleCtx) -> Rule:
    """A rule that only applies when its condition holds; else ``else``, default, or nothing."""

    def apply(cur: Any, run: Run) -> Any:
        if _holds(cond, cur, run, ctx):
            return rule(cur, run)
        if otherwise is not None:
            return otherwise
        if required and default is None:
            raise ctx.error("required value is missing or null (the condition is false)")
        return default

    return apply


def _holds(cond: Expression, cur: Any, run: Run, ctx: RuleCtx) -> bool:
    try:
        result = cond.evaluate(cur, run[ROOT])
    except ExpressionError as exc:
        raise ctx.error(f"condition: {exc}") from None
    if not isinstance(result, bool):
        raise ctx.error("condition must give true or false")
    return result


def run_steps(steps: Steps, value: Any, ctx: RuleCtx) -> Any:
    """Apply steps in order; a null ends them; a failure names the step."""
    name = ""
    try:
        for name, step in steps:  # noqa: B007 (the handler below reports name)
            value = step(value)
            if value is None:
                return None
    except Exception as exc:
        raise step_error(ctx, name, exc) from None
    return value


def step_error(ctx: RuleCtx, name: str, exc: Exception) -> MappingError:
    """A transform failure as a MappingError; Python's own messages may quote the value."""
    if isinstance(exc, StepError):
        return ctx.error(f"transform {name!r} failed: {exc}")
    return ctx.error(f"transform {name!r} failed ({type(exc).__name__}); check the value's "
                     f"type and format")
