"""Routing-key patterns and route filters, pure.

The broker already routes by binding, but a message can reach a route queue by other means (a
replay, a manual publish, a misconfigured shovel); the worker checks the envelope type against
the route's patterns so such a message is dead-lettered with a reason instead of delivered.
Filters are CEL over the envelope (``event``), compiled once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from middleware.celengine import cel
from middleware.envelope import Envelope
from middleware.errors import ProcessingError

__all__ = ["compile_filter", "compile_patterns"]


def _match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    """AMQP topic semantics: '*' is exactly one word, '#' zero or more words."""
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    return bool(words) and head in ("*", words[0]) and _match(rest, words[1:])


def compile_patterns(patterns: Sequence[str]) -> Callable[[str], bool]:
    """A predicate telling whether a routing key matches any of the topic patterns.

    Event types are few, so answers are cached per key.
    """
    split = [tuple(p.split(".")) for p in patterns]

    @lru_cache(maxsize=4096)
    def matches(key: str) -> bool:
        words = tuple(key.split("."))
        return any(_match(pattern, words) for pattern in split)

    return matches


def compile_filter(expression: str) -> Callable[[Envelope], bool]:
    """A CEL predicate over the envelope; raises ValueError at load for a syntax error."""
    program = cel.compile(expression)

    def matches(envelope: Envelope) -> bool:
        context: dict[str, Any] = {"event": envelope.model_dump(mode="json", exclude_none=True)}
        try:
            result = program.execute(context)
        except Exception as exc:  # CEL raises plain runtime errors (missing keys, type errors)
            raise ProcessingError(f"route filter failed: {exc}") from exc
        if not isinstance(result, bool):
            raise ProcessingError(f"route filter returned {type(result).__name__}, not bool")
        return result

    return matches
