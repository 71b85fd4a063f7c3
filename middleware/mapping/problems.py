"""pydantic validation errors as Problems with file, line, dotted path and a fix.

Shared by mapping files and mapping test files. Unknown keys get a "did you mean" drawn from
the keys the enclosing model accepts, found by walking the models along the error's location.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from middleware.errors import Problem
from middleware.yamlfile import Located, did_you_mean, quote_hint

__all__ = ["problems_from"]

_HINTS = {
    "xref": "write it as 'crm.customer -> erp.account'",
    "mapping": "use lower-case letters, digits, '-', '_' and '.', e.g. crm-customer-to-erp",
}


def problems_from(exc: ValidationError, located: Located, model: type[BaseModel],
                  prefix: tuple[Any, ...] = ()) -> list[Problem]:
    """One Problem per pydantic error; prefix is where model's data sits in the file."""
    return [_problem(located, err, model, prefix) for err in exc.errors()]


def _problem(located: Located, err: Any, model: type[BaseModel],
             prefix: tuple[Any, ...]) -> Problem:
    loc = (*prefix, *err["loc"])
    if err["type"] != "missing":
        # Union members add type tags below the real location; cut back to a key in the file.
        while len(loc) > 1 and loc not in located.lines:
            loc = loc[:-1]
    key = str(loc[-1]) if loc else ""
    if err["type"] == "extra_forbidden":
        owner = _model_at(model, tuple(err["loc"])[:-1])
        keys = [f.alias or n for n, f in owner.model_fields.items()] if owner else []
        return located.problem(loc, f"unknown key {key!r}{did_you_mean(key, keys)}")
    if err["type"] == "missing":
        return located.problem(loc, f"missing required key {key!r}")
    if err["type"] == "string_pattern_mismatch" and key in _HINTS:
        return located.problem(loc, f"bad format: {_HINTS[key]}")
    return located.problem(loc, err["msg"].removeprefix("Value error, ") + quote_hint(err))


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model owning the object at loc, following fields (by alias), lists and dicts."""
    current: type[BaseModel] | None = model
    i = 0
    while i < len(loc):
        if current is None:
            return None
        field = next((f for n, f in current.model_fields.items() if loc[i] in (n, f.alias)),
                     None)
        if field is None:
            return None
        current, containers = _unwrap(field.annotation)
        i += 1 + containers
    return current


def _unwrap(annotation: Any) -> tuple[type[BaseModel] | None, int]:
    """The model inside an annotation and how many list/dict levels wrap it."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, 0
    origin = typing.get_origin(annotation)
    if origin in (list, dict):
        found, levels = _unwrap(typing.get_args(annotation)[-1])
        return found, levels + 1
    if isinstance(annotation, types.UnionType) or origin is typing.Union:
        for arg in typing.get_args(annotation):
            found, levels = _unwrap(arg)
            if found is not None:
                return found, levels
    return None, 0
