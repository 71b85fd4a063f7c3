"""JSON Schema checks of source and target payloads, with errors a person can act on.

One compiled validator per schema file, cached by path and modification time, so a worker never
re-reads a schema per message yet an edited schema is picked up by the next mapping reload.
Errors carry the failing location as a dotted path (``lines.2.qty``) and describe the rule that
failed from the schema's side only: jsonschema's own messages quote the offending value, and
payload values must never reach logs or dead-letter headers.

Every message is checked twice (source and target), so the common case must be cheap: the Rust
validator ``jsonschema_rs`` answers "valid?" in about a microsecond where ``jsonschema`` needs
about a hundred. Only a payload it rejects goes through ``jsonschema``, which stays the authority
on what is wrong (and on whether anything is: a payload it accepts passes).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema_rs
from jsonschema import exceptions as js_errors
from jsonschema import validators

from middleware.errors import ConfigError, Problem, SchemaError
from middleware.yamlfile import dotted

__all__ = ["SchemaCheck", "load_schema"]

SchemaCheck = Callable[[Any], None]


def load_schema(path: str | Path) -> SchemaCheck:
    """A check function for the schema at path; ConfigError if it is unreadable or invalid."""
    file = Path(path)
    try:
        mtime = file.stat().st_mtime_ns
    except OSError as exc:
        raise ConfigError([Problem(str(file), None, "", f"cannot read schema: {exc.strerror}; "
                                                        f"check the schema path")]) from exc
    return _compiled(str(file.resolve()), mtime)


@lru_cache(maxsize=256)
def _compiled(file: str, mtime_ns: int) -> SchemaCheck:
    try:
        schema = json.loads(Path(file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError([Problem(file, getattr(exc, "lineno", None), "",
                                   f"schema is not valid JSON: {exc}")]) from exc
    cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except js_errors.SchemaError as exc:
        raise ConfigError([Problem(file, None, dotted(exc.absolute_path),
                                   f"not a valid JSON Schema: {exc.message}")]) from exc
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    fast = jsonschema_rs.validator_for(schema, validate_formats=True)
    name = Path(file).name

    def check(payload: Any) -> None:
        if fast.is_valid(payload):
            return
        errors = list(validator.iter_errors(payload))
        if not errors:
            return
        first = js_errors.best_match(errors)
        where = dotted(first.absolute_path)
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise SchemaError(f"{name}: {where or '<root>'}: {_describe(first)}{more}",
                          path=where, schema=name)

    return check


def _describe(error: js_errors.ValidationError) -> str:
    """What the schema demanded, without quoting the instance."""
    keyword, wanted = error.validator, error.validator_value
    if keyword == "required" and isinstance(error.instance, dict):
        missing = [name for name in wanted if name not in error.instance]
        return f"missing required field(s) {', '.join(missing)}"
    if keyword == "type":
        return f"must be of type {wanted}"
    if keyword == "enum":
        return f"must be one of {wanted}"
    if keyword == "additionalProperties":
        return "has fields the schema does not allow"
    if keyword in ("pattern", "format", "minLength", "maxLength", "minimum", "maximum",
                   "minItems", "maxItems", "const", "multipleOf", "exclusiveMinimum",
                   "exclusiveMaximum"):
        return f"violates {keyword} {wanted!r}"
    return f"violates the schema's {keyword!r} rule"
