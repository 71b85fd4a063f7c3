"""Event derivation shared by inbound adapters: entity, action, subject, time and id of an event.

Webhooks, SOAP notifications and polled records all carry their business meaning in different
places (a header, a nested field, a code that needs translating). Each inbound endpoint declares
where to find it with small ``ValueRule``s, compiled once at start:

    derive:
      entity:  {value: customer}                                  # a constant
      action:  {header: X-Shopify-Topic, map: {orders/create: created}}
      subject: {path: data.payload.ChangeEventHeader.recordIds.0}  # dotted path, list indexes
      time:    {cel: "payload.occurredAt"}                          # CEL over payload, headers
      id:      {path: eventId}

A rule has exactly one source (``value``, ``path``, ``header`` or ``cel``), then optionally a
``pattern`` (regex; its first group is kept), a ``map`` (value translation) and a ``default``.
Entity and action become routing-key words (lowercased, other characters turned into ``_``).
Times accept ISO 8601, epoch seconds or milliseconds and .NET ``/Date(ms±zzzz)/`` (Dynamics),
with ASCII digits only (``float`` and ``int`` also read other scripts' digits). Integers beyond
the 64-bit range reach the rules as strings of their exact digits (``adapters.rest.body``), so
ids derived from them keep every digit.

    compile_derive(config) -> Deriver;  Deriver.derive(payload, headers) -> Derived
    DerivationError(field, message)     a rule found nothing usable; adapters answer 422 / fault
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from middleware.celengine import cel

__all__ = [
    "DerivationError",
    "Derive",
    "Derived",
    "Deriver",
    "ValueRule",
    "compile_derive",
    "compile_rule",
    "parse_time",
    "resolve_path",
]

_SOURCES = ("value", "path", "header", "cel")
_WORD_BAD = re.compile(r"[^a-z0-9_-]+")
_PATH_PART = re.compile(r"[^.\[\]]+")
_DOTNET_DATE = re.compile(r"^/Date\((-?[0-9]{1,16})([+-][0-9]{4})?\)/$")
_EPOCH = re.compile(r"^-?[0-9]{1,16}(\.[0-9]{1,9})?$")
_INDEX = re.compile(r"^-?[0-9]{1,9}$")
_MISSING = object()


class DerivationError(ValueError):
    """A rule could not produce a value; ``field`` names the rule (entity, subject, ...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"cannot derive {field}: {message}")
        self.field = field


class ValueRule(BaseModel):
    """Where one event attribute comes from; exactly one of value, path, header or cel."""

    model_config = ConfigDict(extra="forbid")

    value: str | None = Field(None, description="A constant.", examples=["customer"])
    path: str | None = Field(
        None, description="Dotted path into the JSON payload; digits index lists.",
        examples=["data.payload.ChangeEventHeader.recordIds.0"],
    )
    header: str | None = Field(
        None, description="HTTP header name (case-insensitive).", examples=["X-Shopify-Topic"]
    )
    cel: str | None = Field(
        None, description="CEL expression over 'payload' and 'headers' (lowercase names).",
        examples=["payload.objectId"],
    )
    pattern: str | None = Field(
        None, description="Regex applied to the value; the first group (or whole match) is kept.",
        examples=[r"^(\w+)\."],
    )
    map: dict[str, str] | None = Field(
        None, description="Translate values; unknown values fall to 'default' or fail.",
        examples=[{"UPDATE": "updated", "CREATE": "created"}],
    )
    default: str | None = Field(None, description="Used when the source yields nothing.")

    @model_validator(mode="after")
    def _one_source(self) -> ValueRule:
        given = [name for name in _SOURCES if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(_SOURCES)} (got {given or 'none'})")
        if self.pattern is not None:
            re.compile(self.pattern)
        if self.cel is not None:
            try:
                cel.compile(self.cel)
            except (ValueError, RuntimeError) as exc:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ValueError(f"invalid CEL expression: {first}") from None
        return self


class Derive(BaseModel):
    """How an inbound endpoint finds the meaning of each event it receives."""

    model_config = ConfigDict(extra="forbid")

    entity: ValueRule = Field(description="Entity word of the event type, e.g. customer.")
    action: ValueRule = Field(description="Action word of the event type, e.g. updated.")
    subject: ValueRule | None = Field(None, description="Business key, e.g. customer number.")
    time: ValueRule | None = Field(None, description="When the change happened; default now.")
    id: ValueRule | None = Field(
        None, description="Stable event id; default: the provider delivery id, else random."
    )


@dataclass(frozen=True)
class Derived:
    entity: str
    action: str
    subject: str | None
    time: datetime | None
    id: str | None


Rule = Callable[[Any, Mapping[str, str]], str | None]


def resolve_path(data: Any, path: str) -> Any:
    """Follow a dotted path (``a.b.0.c`` or ``a.b[0].c``); None when any step is absent."""
    current = data
    for part in _PATH_PART.findall(path):
        if isinstance(current, dict):
            current = current.get(part, _MISSING)
        elif isinstance(current, list) and _INDEX.match(part):
            index = int(part)
            current = current[index] if -len(current) <= index < len(current) else _MISSING
        else:
            current = _MISSING
        if current is _MISSING:
            return None
    return current


def compile_rule(rule: ValueRule, field: str) -> Rule:
    """One rule as a function of (payload, lowercase headers) -> text or None."""
    source = _source(rule, field)
    pattern = re.compile(rule.pattern) if rule.pattern else None

    def apply(payload: Any, headers: Mapping[str, str]) -> str | None:
        raw = source(payload, headers)
        text = None if raw is None or raw == "" else _text(raw)
        if text is not None and pattern is not None:
            match = pattern.search(text)
            text = None if match is None else (match.group(1) if match.groups() else match[0])
        if text is not None and rule.map is not None:
            text = rule.map.get(text)
            if text is None and rule.default is None:
                known = ", ".join(sorted(rule.map))
                raise DerivationError(field, f"value is not one of the mapped values ({known})")
        return rule.default if text is None else text

    return apply


def _source(rule: ValueRule, field: str) -> Callable[[Any, Mapping[str, str]], Any]:
    if rule.value is not None:
        constant = rule.value
        return lambda _payload, _headers: constant
    if rule.path is not None:
        path = rule.path
        return lambda payload, _headers: resolve_path(payload, path)
    if rule.header is not None:
        name = rule.header.lower()
        return lambda _payload, headers: headers.get(name)
    program = cel.compile(rule.cel or "")

    def evaluate(payload: Any, headers: Mapping[str, str]) -> Any:
        try:
            return program.execute({"payload": payload, "headers": dict(headers)})
        except (KeyError, IndexError):
            return None  # an absent field: let 'default' or the caller decide
        except Exception as exc:  # CEL raises plain runtime errors; never quote values
            raise DerivationError(field, f"CEL expression failed ({type(exc).__name__})") from None

    return evaluate


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_time(value: str) -> datetime:
    """ISO 8601, epoch seconds/milliseconds, or .NET ``/Date(ms)/``; naive means UTC."""
    text = value.strip()
    dotnet = _DOTNET_DATE.match(text)
    if dotnet:
        return datetime.fromtimestamp(int(dotnet.group(1)) / 1000, UTC)
    if _EPOCH.match(text):
        number = float(text)
        seconds = number / 1000 if abs(number) >= 1e11 else number
        return datetime.fromtimestamp(seconds, UTC)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Deriver:
    """A compiled ``Derive``; one per endpoint, safe to share across threads."""

    def __init__(self, config: Derive) -> None:
        self._rules: dict[str, Rule] = {}
        for field in ("entity", "action", "subject", "time", "id"):
            rule = getattr(config, field)
            if rule is not None:
                self._rules[field] = compile_rule(rule, field)

    def _get(self, field: str, payload: Any, headers: Mapping[str, str]) -> str | None:
        rule = self._rules.get(field)
        return None if rule is None else rule(payload, headers)

    def _word(self, field: str, payload: Any, headers: Mapping[str, str]) -> str:
        text = self._get(field, payload, headers)
        word = _WORD_BAD.sub("_", (text or "").lower()).strip("_")
        if not word:
            raise DerivationError(field, "the rule found no value; add a 'default' or fix the rule")
        return word

    def derive(self, payload: Any, headers: Mapping[str, str]) -> Derived:
        """Apply every rule; ``headers`` must have lowercase names (Starlette's are)."""
        when = self._get("time", payload, headers)
        try:
            time = parse_time(when) if when is not None else None
        except (ValueError, OverflowError, OSError):
            raise DerivationError(
                "time", "not ISO 8601, epoch seconds/milliseconds or /Date(ms)/"
            ) from None
        return Derived(
            entity=self._word("entity", payload, headers),
            action=self._word("action", payload, headers),
            subject=self._get("subject", payload, headers),
            time=time,
            id=self._get("id", payload, headers),
        )


def compile_derive(config: Derive) -> Deriver:
    """Compile once at adapter start; config errors were already caught by the model."""
    return Deriver(config)
