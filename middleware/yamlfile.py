"""Read a YAML file keeping the line of every value, with ${ENV} and ${file:PATH} interpolation.

Config and mapping errors must name file and line; PyYAML's composed node tree knows both, so we
walk it once to build plain Python data plus a path -> line index. Interpolation happens here so
secrets never need to live in committed YAML: ``${VAR}`` / ``${VAR:-default}`` from the
environment, ``${file:PATH}`` from a file (a mounted Kubernetes Secret; PATH relative to the YAML
file, one trailing newline dropped), e.g. a broker password in ``amqp://app:${file:pw}@host/``.

Plain (unquoted) scalars are typed by the YAML 1.2 core schema, not PyYAML's YAML 1.1 rules:
only ``true``/``false`` are booleans, so NAV's field ``No``, ``yes``, ``on``, ``off`` and
Norway's country code ``NO`` stay text; ``12:30`` is text, not the sexagesimal 750; dates stay
text as in JSON; ``0o17`` and ``0x1F`` are octal and hex. A number with a leading zero
(``012``) is refused: YAML 1.1 reads it as octal 10, YAML 1.2 as 12, and an account or postal
code would lose its zero either way, so the author must say which they mean.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from middleware.errors import ConfigError, Problem
from middleware.secrets import read_secret_file

__all__ = ["Located", "did_you_mean", "dotted", "load_yaml", "quote_hint"]

_ENV = re.compile(r"\$\{(?:file:(?!-)([^}]+)|([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?)\}")
Path_ = tuple[str | int, ...]
# Quoted and explicitly tagged scalars keep PyYAML's constructors; plain ones are typed below.
_SCALARS = yaml.SafeLoader("")
_PLAIN = "!silobridge/plain"
_NULL = re.compile(r"~|null|Null|NULL|")
_BOOL = {"true": True, "True": True, "TRUE": True,
         "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"[-+]?[0-9]+")
_LEADING_ZERO = re.compile(r"[-+]?0[0-9]+")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_SPECIAL_FLOAT = re.compile(r"([-+]?)\.(?:(inf|Inf|INF)|nan|NaN|NAN)")


class _Loader(yaml.SafeLoader):
    """Composes like SafeLoader but tags every plain scalar ``_PLAIN``, so ``_core`` types it
    by YAML 1.2 rules; quoted scalars and explicit tags (``!!str``) are resolved as before."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and implicit[0]:
            return _PLAIN
        return super().resolve(kind, value, implicit)


class _Ambiguous(ValueError):
    """A plain scalar that YAML 1.1 and 1.2 read differently and that no rule can settle."""


class Located:
    """Parsed YAML data plus the line of each value, addressed by its path of keys and indexes."""

    def __init__(self, file: str, data: Any, lines: dict[Path_, int]) -> None:
        self.file = file
        self.data = data
        self.lines = lines

    def line(self, path: Iterable[str | int]) -> int | None:
        """Line of the deepest known ancestor of path (pydantic locs can go below YAML nodes)."""
        parts = tuple(path)
        while parts:
            if parts in self.lines:
                return self.lines[parts]
            parts = parts[:-1]
        return self.lines.get((), None)

    def problem(self, path: Iterable[str | int], message: str) -> Problem:
        parts = tuple(path)
        return Problem(self.file, self.line(parts), dotted(parts), message)


def dotted(path: Iterable[str | int]) -> str:
    """routes.0.target.exchange style path, the form every error message uses."""
    return ".".join(str(p) for p in path)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' when a close choice exists, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def quote_hint(error: Mapping[str, Any]) -> str:
    """For a pydantic "valid string" error on an unquoted YAML number or boolean: why, and the
    fix ("; YAML read true as a boolean: quote it ('true')"); otherwise ''."""
    value = error.get("input")
    if error.get("type") != "string_type" or not isinstance(value, bool | int | float):
        return ""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    kind = "a boolean" if isinstance(value, bool) else "a number"
    return f"; YAML read {text} as {kind}: quote it ('{text}') to mean the text"


def load_yaml(path: str | Path, env: Mapping[str, str] | None = None) -> Located:
    """Parse one YAML file; raise ConfigError with the file and line for syntax or ${ENV} errors."""
    file = str(path)
    environ = os.environ if env is None else env
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(file, None, "", f"cannot read file: {exc.strerror}")]) from exc
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([Problem(file, line, "", f"YAML syntax error: {reason}")]) from exc
    lines: dict[Path_, int] = {}
    problems: list[Problem] = []
    data = None if node is None else _convert(node, (), lines, problems, file, environ)
    if problems:
        raise ConfigError(problems)
    return Located(file, data, lines)


def _convert(
    node: yaml.Node,
    path: Path_,
    lines: dict[Path_, int],
    problems: list[Problem],
    file: str,
    environ: Mapping[str, str],
) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in out:
                problems.append(Problem(file, key_node.start_mark.line + 1, dotted((*path, key)),
                                        "duplicate key; the later value would silently win"))
            out[key] = _convert(value_node, (*path, key), lines, problems, file, environ)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _convert(child, (*path, i), lines, problems, file, environ)
            for i, child in enumerate(node.value)
        ]
    if node.tag == _PLAIN:
        try:
            value = _core(str(node.value))
        except _Ambiguous as exc:
            problems.append(Problem(file, lines[path], dotted(path), str(exc)))
            return None
    else:
        value = _SCALARS.construct_object(node, deep=True)
    if isinstance(value, str) and "${" in value:
        return _interpolate(value, path, lines[path], problems, file, environ)
    return value


def _core(text: str) -> Any:
    """A plain scalar typed by the YAML 1.2 core schema; anything else is a string."""
    if _NULL.fullmatch(text):
        return None
    if text in _BOOL:
        return _BOOL[text]
    if _LEADING_ZERO.fullmatch(text):
        raise _Ambiguous(
            f"{text} is a number with a leading zero: YAML 1.1 reads it as octal, YAML 1.2 as "
            f"decimal, and a code would lose its zero; quote it ('{text}') if it is text such as "
            f"an account or postal code, or write {text.lstrip('+-0') or '0'} (decimal) or "
            f"0o{text.lstrip('+-0') or '0'} (octal)")
    if _INT.fullmatch(text):
        return int(text)
    if text[:2] in ("0o", "0x"):
        try:
            return int(text[2:], 8 if text[1] == "o" else 16)
        except ValueError:
            return text
    if _FLOAT.fullmatch(text):
        return float(text)
    special = _SPECIAL_FLOAT.fullmatch(text)
    if special:
        sign, infinite = special.groups()
        return float(f"{sign}inf") if infinite else float("nan")
    return text


def _interpolate(
    value: str,
    path: Path_,
    line: int,
    problems: list[Problem],
    file: str,
    environ: Mapping[str, str],
) -> str:
    def replace(match: re.Match[str]) -> str:
        secret_file, name, default = match.groups()
        if secret_file is not None:
            try:
                return read_secret_file(Path(file).parent / secret_file.strip())
            except ValueError as exc:
                problems.append(Problem(file, line, dotted(path), str(exc)))
                return ""
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        problems.append(Problem(file, line, dotted(path),
                                f"environment variable {name} is not set; set it or write "
                                f"${{{name}:-default}}"))
        return ""

    return _ENV.sub(replace, value)
