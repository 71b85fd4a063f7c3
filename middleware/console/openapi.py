"""The admin API's OpenAPI 3.1 document, made from the endpoint table and the body models, so
it cannot drift from what is served (schemathesis fuzzes the API from it)."""

from __future__ import annotations

import functools
from typing import Any

from middleware.console.rbac import ENDPOINTS

__all__ = ["document"]

_TEXT = {"type": "string", "maxLength": 255}


def _range(low: int, high: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high}


_QUERIES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "errors": [("limit", _range(1, 500)), ("offset", _range(0, 100_000)), ("q", _TEXT),
               ("route", _TEXT), ("stage", _TEXT), ("error", _TEXT)],
    "dead_letters": [("limit", _range(1, 500)), ("offset", _range(0, 1000)), ("type", _TEXT),
                     ("reason", _TEXT), ("subject", _TEXT)],
    "xref_search": [("namespace", _TEXT), ("key", _TEXT), ("limit", _range(1, 500)),
                    ("offset", _range(0, 1_000_000))],
    "oidc_callback": [(name, {"type": "string", "maxLength": 2048})
                      for name in ("code", "state", "error", "error_description")],
    "audit": [("limit", _range(1, 10_000)), ("offset", _range(0, 10_000_000)),
              ("actor", _TEXT), ("action", _TEXT),
              ("format", {"type": "string", "enum": ["json", "ndjson"]})],
}
"""Query parameters and their bounds; ``handlers`` enforces the same numbers (a test checks
that the fuzzer finds no difference)."""

_ANSWERS = {
    "400": "Bad input (the message says which parameter and how to fix it)",
    "401": "Not signed in, or the session expired",
    "403": "The role may not do this, the route is outside the user's scope, or the "
           "X-CSRF-Token header is missing or wrong",
    "404": "No such route, dead letter, user or cross-reference link",
    "409": "Conflicts with what exists",
    "413": "Body too large",
    "422": "The body is invalid (details name each field)",
    "429": "Too many failed logins (Retry-After)",
    "431": "The request head (address and headers) is too large",
    "503": "Broker or store unavailable (Retry-After)",
}


@functools.cache
def document() -> dict[str, Any]:
    from middleware.console.bodies import BODIES

    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    for endpoint in ENDPOINTS:
        operation: dict[str, Any] = {
            "operationId": endpoint.name, "summary": endpoint.summary,
            "responses": {"200": {"description": "Done", "content": {
                "application/json": {"schema": {"type": "object"}}}},
                **{code: {"description": text} for code, text in _ANSWERS.items()}},
        }
        if endpoint.name in ("user_add", "token_add"):
            operation["responses"]["201"] = {"description": "Created", "content": {
                "application/json": {"schema": {"type": "object"}}}}
        if endpoint.name in ("oidc_start", "oidc_callback"):
            operation["responses"]["303"] = {"description": "Redirect (to the provider, the "
                                             "console, or the sign-in page with the reason)"}
        if endpoint.name == "audit":
            operation["responses"]["200"]["content"]["application/x-ndjson"] = {
                "schema": {"type": "string"}}
        if endpoint.permission is None:
            operation["security"] = []
        else:
            operation["description"] = f"Needs the permission `{endpoint.permission.value}`."
        parameters = [{"name": name, "in": "path", "required": True,
                       "schema": {"type": "string", "minLength": 1}}
                      for name in ("route", "id", "name") if f"{{{name}}}" in endpoint.path]
        parameters += [{"name": name, "in": "query", "required": False, "schema": schema}
                       for name, schema in _QUERIES.get(endpoint.name, [])]
        if parameters:
            operation["parameters"] = parameters
        model = BODIES.get(endpoint.name)
        if model is not None:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
            operation["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "silobridge admin API", "version": "1",
                 "description": "Routes, dead letters, errors, cross-references, users and "
                                "the audit log; see docs/console.md for roles."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "session": {"type": "apiKey", "in": "cookie", "name": "silobridge_session"},
            "token": {"type": "http", "scheme": "bearer"}}},
        "security": [{"session": []}, {"token": []}],
    }
