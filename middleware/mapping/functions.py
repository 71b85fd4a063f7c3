"""The transform registry: every transform a mapping can name, in one place.

A transform is a pure function of one value, configured by an optional argument that is checked
(with pydantic) when the mapping loads, so a bad argument is a load error, not a DLQ full of
messages. ``build`` turns the argument into a ready step once; the engine then only calls steps.
``inverse`` names the step that undoes this one; transforms without it make a reverse mapping a
load error. To add a transform, write its builder below and decorate it with ``@transform``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from functools import cached_property
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from middleware.mapping import timefuncs
from middleware.mapping.timefuncs import StepError
from middleware.mapping.transform_args import Pad, RegexReplace, Replace, Round, Zone
from middleware.yamlfile import did_you_mean

__all__ = [
    "REGISTRY",
    "Step",
    "StepError",
    "StepSpec",
    "Transform",
    "TransformSpecError",
    "build_step",
    "inverse_step",
    "step_name",
    "to_text",
]

Step = Callable[[Any], Any]
StepSpec = str | dict[str, Any]
_NO_ARG = object()


class TransformSpecError(ValueError):
    """A transform step in a mapping file is unknown or badly configured."""


@dataclass(frozen=True)
class Transform:
    """One registered transform: how to build it, its argument type, and its inverse."""

    name: str
    build: Callable[..., Step]
    arg: Any
    inverse: Callable[[Any], StepSpec] | None
    summary: str
    example: str

    @cached_property
    def adapter(self) -> TypeAdapter[Any] | None:
        return None if self.arg is None else TypeAdapter(self.arg)


REGISTRY: dict[str, Transform] = {}


def transform(
    name: str, summary: str, example: str, arg: Any = None,
    inverse: Callable[[Any], StepSpec] | None = None,
) -> Callable[[Callable[..., Step]], Callable[..., Step]]:
    """Register a step builder under name (the one place a transform is added)."""

    def register(build: Callable[..., Step]) -> Callable[..., Step]:
        REGISTRY[name] = Transform(name, build, arg, inverse, summary, example)
        return build

    return register


def step_name(spec: StepSpec) -> str:
    """The transform name of a step written as ``upper`` or ``{prefix: "CRM-"}``."""
    return spec if isinstance(spec, str) else next(iter(spec), "")


def _split(spec: StepSpec) -> tuple[Transform, Any]:
    if isinstance(spec, dict) and len(spec) != 1:
        raise TransformSpecError("a step is a name or a one-key mapping {name: argument}")
    name = step_name(spec)
    found = REGISTRY.get(name)
    if found is None:
        raise TransformSpecError(f"unknown transform {name!r}{did_you_mean(name, REGISTRY)}")
    raw = _NO_ARG if isinstance(spec, str) else spec[name]
    if found.adapter is None:
        if raw is not _NO_ARG:
            raise TransformSpecError(f"transform {name!r} takes no argument; write just {name}")
        return found, None
    if raw is _NO_ARG:
        raise TransformSpecError(f"transform {name!r} needs an argument, e.g. {found.example}")
    try:
        return found, found.adapter.validate_python(raw)
    except ValidationError as exc:
        reason = "; ".join(_reasons(exc, found.arg))
        raise TransformSpecError(
            f"bad argument for {name!r}: {reason}; example: {found.example}"
        ) from None


def _reasons(exc: ValidationError, arg: Any) -> list[str]:
    keys = [f.alias or n for n, f in arg.model_fields.items()] if _is_model(arg) else []
    out = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            out.append(f"unknown key {where!r}{did_you_mean(str(err['loc'][-1]), keys)}")
        else:
            message = err["msg"].removeprefix("Value error, ")
            out.append(f"{where}: {message}" if where else message)
    return out


def _is_model(arg: Any) -> bool:
    return isinstance(arg, type) and issubclass(arg, BaseModel)


def build_step(spec: StepSpec) -> Step:
    """Validate a step as written in YAML and return the ready function."""
    found, arg = _split(spec)
    return found.build() if found.arg is None else found.build(arg)


def inverse_step(spec: StepSpec) -> StepSpec | None:
    """The step undoing spec, or None when the transform is not invertible."""
    found, arg = _split(spec)
    if found.inverse is None:
        return None
    return found.inverse(arg)


def to_text(value: Any) -> str:
    """Scalars as text: the one conversion behind str, text transforms and value-map keys."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | float):
        return repr(value)
    raise StepError(f"cannot turn a {type(value).__name__} into text")


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise StepError(f"expected a number or numeric text, got a {type(value).__name__}")
    return value


def _parse(kind: Callable[[Any], Any], value: Any, what: str) -> Any:
    """Parse numeric text; Python's own message would quote the value, so replace it."""
    try:
        result = kind(value.strip() if isinstance(value, str) else value)
    except (ValueError, ArithmeticError):
        raise StepError(f"the text is not {what}") from None
    if isinstance(result, float | Decimal) and not math.isfinite(result):
        raise StepError(f"{what} must be finite (no NaN or infinity)")
    return result


_TRUE = frozenset({"true", "yes", "y", "1", "on"})
_FALSE = frozenset({"false", "no", "n", "0", "off"})
_ROUNDING = {"half_even": ROUND_HALF_EVEN, "half_up": ROUND_HALF_UP}
_TO_STR: Callable[[Any], StepSpec] = lambda _: "str"  # noqa: E731


@transform("str", "Any scalar as text (true/false, plain decimals, ISO dates).", "str")
def _str() -> Step:
    return to_text


@transform("int", "Integer from a number or integer text; refuses fractions.", "int",
           inverse=_TO_STR)
def _int() -> Step:
    def to_int(value: Any) -> int:
        if type(value) is str:  # the common case first: numeric text from JSON
            try:
                return int(value)
            except ValueError:
                return int(_parse(int, value, "an integer"))
        value = _number(value)
        if isinstance(value, float | Decimal) and value != int(value):
            raise StepError("the number has a fractional part")
        return int(value)

    return to_int


@transform("float", "Floating-point number from a number or numeric text.", "float",
           inverse=_TO_STR)
def _float() -> Step:
    return lambda value: float(_parse(float, _number(value), "a number"))


@transform("decimal", "Exact decimal from a number or numeric text (for money).", "decimal",
           inverse=_TO_STR)
def _decimal() -> Step:
    return lambda value: _parse(Decimal, to_text(_number(value)), "a decimal number")


@transform("bool", "true/false from booleans, 0/1 or yes/no/on/off/true/false text.", "bool")
def _bool() -> Step:
    def to_bool(value: Any) -> bool:
        if isinstance(value, bool):
            return value
        word = to_text(value).strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise StepError("not a recognised boolean")

    return to_bool


@transform("upper", "Upper-case text; reverse: lower.", "upper", inverse=lambda _: "lower")
def _upper() -> Step:
    return lambda value: value.upper() if type(value) is str else to_text(value).upper()


@transform("lower", "Lower-case text; reverse: upper.", "lower", inverse=lambda _: "upper")
def _lower() -> Step:
    return lambda value: value.lower() if type(value) is str else to_text(value).lower()


@transform("trim", "Strip leading and trailing white space.", "trim")
def _trim() -> Step:
    return lambda value: value.strip() if type(value) is str else to_text(value).strip()


@transform("prefix", "Put text in front.", '{prefix: "CRM-"}', str,
           inverse=lambda arg: {"strip_prefix": arg})
def _prefix(arg: str) -> Step:
    return lambda value: arg + (value if type(value) is str else to_text(value))


@transform("suffix", "Put text at the end.", '{suffix: "-DE"}', str,
           inverse=lambda arg: {"strip_suffix": arg})
def _suffix(arg: str) -> Step:
    return lambda value: (value if type(value) is str else to_text(value)) + arg


@transform("strip_prefix", "Remove text from the front when present.", '{strip_prefix: "CRM-"}',
           str, inverse=lambda arg: {"prefix": arg})
def _strip_prefix(arg: str) -> Step:
    return lambda value: to_text(value).removeprefix(arg)


@transform("strip_suffix", "Remove text from the end when present.", '{strip_suffix: "-DE"}',
           str, inverse=lambda arg: {"suffix": arg})
def _strip_suffix(arg: str) -> Step:
    return lambda value: to_text(value).removesuffix(arg)


@transform("replace", "Replace every occurrence of old by new.", '{replace: {old: "/", new: "-"}}',
           Replace)
def _replace(arg: Replace) -> Step:
    return lambda value: to_text(value).replace(arg.old, arg.new)


@transform("regex_replace", "Regular-expression substitution.",
           '{regex_replace: {pattern: "\\\\s+", repl: " "}}', RegexReplace)
def _regex_replace(arg: RegexReplace) -> Step:
    return lambda value: arg.pattern.sub(arg.repl, to_text(value))


@transform("pad", "Pad text to a width.", '{pad: {width: 8, fill: "0"}}', Pad)
def _pad(arg: Pad) -> Step:
    if arg.side == "left":
        return lambda value: to_text(value).rjust(arg.width, arg.fill)
    return lambda value: to_text(value).ljust(arg.width, arg.fill)


@transform("truncate", "Cut text to at most N characters.", "{truncate: 35}", int)
def _truncate(arg: int) -> Step:
    return lambda value: to_text(value)[:arg]


@transform("round", "Round a number (decimals keep exactness).", "{round: {digits: 2}}", Round)
def _round(arg: Round) -> Step:
    exponent = Decimal(1).scaleb(-arg.digits)
    rounding = _ROUNDING[arg.mode]

    def to_round(value: Any) -> Any:
        if isinstance(value, Decimal):
            return value.quantize(exponent, rounding=rounding)
        if isinstance(value, float | int) and not isinstance(value, bool):
            return float(Decimal(repr(value)).quantize(exponent, rounding=rounding))
        raise StepError("round expects a number; add float or decimal before it")

    return to_round


@transform("parse_datetime", "Text to a datetime: iso8601, epoch, epoch_ms or strftime.",
           '{parse_datetime: "%d.%m.%Y %H:%M"}', str,
           inverse=lambda fmt: {"format_datetime": fmt})
def _parse_datetime(fmt: str) -> Step:
    return timefuncs.datetime_parser(fmt)


@transform("format_datetime", "A datetime to text: iso8601, epoch, epoch_ms or strftime.",
           "{format_datetime: iso8601}", str, inverse=lambda fmt: {"parse_datetime": fmt})
def _format_datetime(fmt: str) -> Step:
    return timefuncs.datetime_formatter(fmt)


@transform("parse_date", "Text to a date, format iso8601 or strftime.",
           '{parse_date: "%d.%m.%Y"}', str, inverse=lambda fmt: {"format_date": fmt})
def _parse_date(fmt: str) -> Step:
    return lambda value: timefuncs.parse_date(value, fmt)


@transform("format_date", "A date to text, format iso8601 or strftime.",
           "{format_date: iso8601}", str, inverse=lambda fmt: {"parse_date": fmt})
def _format_date(fmt: str) -> Step:
    return lambda value: timefuncs.format_date(value, fmt)


def _zone_inverse(arg: Zone) -> StepSpec:
    if arg.from_ is None:
        raise TransformSpecError("timezone without 'from' cannot be reversed; add from")
    return {"timezone": {"from": arg.to.key, "to": arg.from_.key, "ambiguous": arg.ambiguous}}


@transform("timezone", "Express a datetime in another IANA time zone (DST-aware).",
           "{timezone: {from: UTC, to: Europe/Berlin}}", Zone, inverse=_zone_inverse)
def _timezone(arg: Zone) -> Step:
    return timefuncs.zone_converter(arg.from_, arg.to, arg.ambiguous)


@transform("split", "Text to a list at a separator.", '{split: ","}', str,
           inverse=lambda sep: {"join": sep})
def _splitto_text(sep: str) -> Step:
    return lambda value: to_text(value).split(sep)


@transform("join", "A list to text with a separator, skipping nulls.", '{join: " "}', str,
           inverse=lambda sep: {"split": sep})
def _join(sep: str) -> Step:
    return lambda value: sep.join(to_text(v) for v in _items(value) if v is not None)


@transform("concat", "A list to text with no separator, skipping nulls.", "concat")
def _concat() -> Step:
    return lambda value: "".join(to_text(v) for v in _items(value) if v is not None)


@transform("coalesce", "The first non-null item of a list (from: [a, b]).", "coalesce")
def _coalesce() -> Step:
    return lambda value: next((v for v in _items(value) if v is not None), None)


@transform("nullif", "Null when the value equals the argument (then the default applies).",
           '{nullif: ""}', Any)
def _nullif(arg: Any) -> Step:
    return lambda value: None if value == arg else value


def _items(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise StepError("expected a list; use from: [path, path] or split first")
    return value
