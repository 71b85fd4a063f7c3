"""Dotted paths with array indexes (``customer.addresses[0].city``), parsed once.

A plain path copy is the most common rule, so each path compiles to the cheapest getter for its
depth: one ``dict.get`` for a top-level key, chained subscripts inside ``try`` for deeper ones.
Getters take an ignored second argument so the engine can use them directly as field rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import pairwise
from typing import Any

__all__ = [
    "Getter",
    "PathSyntaxError",
    "compile_getter",
    "compile_setter",
    "format_path",
    "parse_path",
]

Key = str | int
Getter = Callable[..., Any]
_SEGMENT = re.compile(r"([^.\[\]]+)((?:\[\d+\])*)")
_INDEX = re.compile(r"\[(\d+)\]")
_MISS = (KeyError, IndexError, TypeError, AttributeError)


class PathSyntaxError(ValueError):
    """A path is not ``name(.name|[index])*``."""


def parse_path(text: str) -> tuple[Key, ...]:
    """``a.b[2].c`` -> ``("a", "b", 2, "c")``; raise PathSyntaxError with the reason."""
    if not isinstance(text, str) or not text:
        raise PathSyntaxError("a path must be a non-empty string such as 'customer.name'")
    keys: list[Key] = []
    for part in text.split("."):
        match = _SEGMENT.fullmatch(part)
        if match is None:
            raise PathSyntaxError(
                f"bad path segment {part!r} in {text!r}; write name, name[0] or a.b[0].c"
            )
        keys.append(match.group(1))
        keys.extend(int(i) for i in _INDEX.findall(match.group(2)))
    return tuple(keys)


def format_path(keys: tuple[Key, ...]) -> str:
    """Inverse of parse_path, the form used in messages and derived reverse rules."""
    out = ""
    for key in keys:
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            out += f".{key}" if out else key
    return out


def compile_getter(keys: tuple[Key, ...]) -> Getter:
    """A function ``get(obj, _=None)`` returning the value at keys, or None when absent."""
    if len(keys) == 1:
        (k,) = keys
        if isinstance(k, str):

            def get_key(obj: Any, _: Any = None) -> Any:
                try:
                    return obj.get(k)
                except AttributeError:
                    return None

            return get_key

        def get_index(obj: Any, _: Any = None) -> Any:
            try:
                return obj[k]
            except _MISS:
                return None

        return get_index
    if len(keys) == 2:
        a, b = keys

        def get2(obj: Any, _: Any = None) -> Any:
            try:
                return obj[a][b]
            except _MISS:
                return None

        return get2

    def get_n(obj: Any, _: Any = None) -> Any:
        try:
            for key in keys:
                obj = obj[key]
        except _MISS:
            return None
        return obj

    return get_n


def compile_setter(keys: tuple[Key, ...]) -> Callable[[dict[str, Any], Any], None]:
    """A function ``set(out, value)`` creating the dicts and lists on the way down."""
    if len(keys) == 1 and isinstance(keys[0], str):
        name = keys[0]

        def set1(out: dict[str, Any], value: Any) -> None:
            out[name] = value

        return set1

    def set_n(out: dict[str, Any], value: Any) -> None:
        node: Any = out
        for key, nxt in pairwise(keys):
            empty: Any = [] if isinstance(nxt, int) else {}
            node = _child(node, key, empty)
        _put(node, keys[-1], value)

    return set_n


def _child(node: Any, key: Key, empty: Any) -> Any:
    if isinstance(key, int):
        _put(node, key, node[key] if key < len(node) and node[key] is not None else empty)
        return node[key]
    return node.setdefault(key, empty)


def _put(node: Any, key: Key, value: Any) -> None:
    if isinstance(key, int):
        node.extend([None] * (key + 1 - len(node)))
    node[key] = value
