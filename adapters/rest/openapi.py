"""The ingress's OpenAPI 3.1 document, built from the configured REST endpoints.

Every REST endpoint adds its operation when it starts; the first one mounts ``/openapi.json`` on
the shared ingress. The document lists every answer the endpoint can give (202, 200 duplicate,
400, 401, 413, 415, 422, 503) with the common error body, so senders and contract-testing tools
(schemathesis runs against it in the tests) know exactly what to expect.
"""

from __future__ import annotations

import weakref
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.rest.inbound_config import ApiKeyAuth, BasicAuth, RestEndpointConfig
from middleware.errors import SilobridgeError
from middleware.ingress import Ingress

__all__ = ["OPENAPI_PATH", "OpenApiDocument", "document_for"]

OPENAPI_PATH = "/openapi.json"

_ERROR = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "What is wrong, in a few words."},
        "detail": {"type": "string", "description": "Where, and how to fix it."},
    },
}
_ACCEPTED = {
    "type": "object",
    "required": ["status", "ids"],
    "properties": {
        "status": {"type": "string", "enum": ["accepted", "duplicate"]},
        "ids": {"type": "array", "items": {"type": "string"},
                "description": "Envelope ids published (or already published)."},
        "duplicates": {"type": "integer", "minimum": 0},
    },
}
_ANSWERS = {
    "400": "Malformed JSON; the body names line, column and position.",
    "413": "Body larger than the endpoint's limit (refused before it is read).",
    "415": "Content-Type not accepted.",
    "422": "An event violates the JSON Schema or lacks a derived attribute; 'path' says where.",
}


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            **extra}


class OpenApiDocument:
    """Operations of the REST endpoints on one ingress."""

    def __init__(self) -> None:
        self._paths: dict[str, Any] = {}
        self._names: set[str] = set()
        self._security: dict[str, Any] = {}

    def add(self, config: RestEndpointConfig, schema: dict[str, Any] | None) -> None:
        """Describe one endpoint; names must be unique (they key metrics and dedupe ids too)."""
        if config.name in self._names:
            raise SilobridgeError(f"two REST endpoints are named {config.name!r}; names must be "
                                  f"unique per ingress")
        self._names.add(config.name)
        body_schema: dict[str, Any] = schema if schema is not None else {}
        if config.batch:
            body_schema = {"anyOf": [body_schema, {"type": "array", "items": body_schema}]}
        responses: dict[str, Any] = {
            "202": {"description": "Stored: every event was confirmed by the broker.",
                    "content": {"application/json": {"schema": {"$ref":
                                                                "#/components/schemas/Accepted"}}}},
            "200": {"description": "Every event was received before; nothing published again.",
                    "content": {"application/json": {"schema": {"$ref":
                                                                "#/components/schemas/Accepted"}}}},
            **{code: _error(text) for code, text in _ANSWERS.items()},
            "503": _error("Broker unavailable; retry after the Retry-After seconds.", headers={
                "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}}),
        }
        operation: dict[str, Any] = {
            "operationId": config.name.replace("-", "_"),
            "summary": f"Receive {config.system} events ({config.name})",
            "requestBody": {"required": True, "content": {
                kind: {"schema": body_schema} for kind in config.content_types}},
            "responses": responses,
        }
        if config.auth is not None:
            responses["401"] = _error("Missing, wrong or stale signature or credentials.")
            operation["security"] = [{config.name: []}]
            self._security[config.name] = _security_scheme(config)
        self._paths[config.path] = {"post": operation}

    def render(self) -> dict[str, Any]:
        components: dict[str, Any] = {"schemas": {"Error": _ERROR, "Accepted": _ACCEPTED}}
        if self._security:
            components["securitySchemes"] = self._security
        return {
            "openapi": "3.1.0",
            "info": {"title": "silobridge ingress", "version": "1"},
            "paths": self._paths,
            "components": components,
        }

    async def endpoint(self, request: Request) -> JSONResponse:
        return JSONResponse(self.render())


def _security_scheme(config: RestEndpointConfig) -> dict[str, Any]:
    auth = config.auth
    if isinstance(auth, BasicAuth):
        return {"type": "http", "scheme": "basic"}
    if isinstance(auth, ApiKeyAuth):
        if auth.query:
            return {"type": "apiKey", "in": "query", "name": auth.query}
        return {"type": "apiKey", "in": "header", "name": auth.header}
    return {"type": "apiKey", "in": "header", "name": _SIGNATURE_HEADER.get(
        getattr(auth, "scheme", ""), getattr(auth, "header", "Signature")),
        "description": "HMAC-SHA256 signature of the raw body, with the delivery id and time "
                       "where the scheme signs them (see the scheme's docs)."}


_SIGNATURE_HEADER = {
    "github": "X-Hub-Signature-256",
    "shopify": "X-Shopify-Hmac-SHA256",
    "stripe": "Stripe-Signature",
    "hubspot": "X-HubSpot-Signature-v3",
    "standard_webhooks": "webhook-signature",
}

_DOCUMENTS: weakref.WeakKeyDictionary[Ingress, OpenApiDocument] = weakref.WeakKeyDictionary()


def document_for(ingress: Ingress) -> OpenApiDocument:
    """The ingress's document; mounts ``/openapi.json`` the first time it is asked for."""
    document = _DOCUMENTS.get(ingress)
    if document is None:
        document = _DOCUMENTS[ingress] = OpenApiDocument()
        ingress.add(Route(OPENAPI_PATH, document.endpoint, methods=["GET"]), "openapi")
    return document
