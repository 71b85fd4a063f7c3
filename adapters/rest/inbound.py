"""REST webhook endpoint: authenticate, parse and derive; the ingress does the rest.

The request path is the ingress's (``middleware.ingress.endpoint``): client certificate where
configured (403) -> declared size (413) -> media type (415) -> streamed size (413) -> here:
signature over the raw bytes (401) -> JSON (400) -> schema and derivation per event (422) ->
there: delivery-id claim (200 when published before, 503 + Retry-After while a concurrent copy
publishes it or the store fails) -> publish with confirms (202, or 503 + Retry-After when the
broker did not confirm everything).
Nothing is published for a request that fails any check, and nothing is answered 2xx unless it
is stored.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import structlog
from starlette.requests import Request

from adapters._derive import DerivationError, compile_derive, compile_rule
from adapters.rest.body import parse_json
from adapters.rest.cloudevents import STRUCTURED, from_request, is_cloudevent
from adapters.rest.inbound_config import HubspotAuth, RestEndpointConfig
from adapters.rest.openapi import document_for
from adapters.rest.replay import default_dedupe, replay_risks
from adapters.rest.signatures import SignedRequest, Verifier, build_verifier
from middleware.adapter import AdapterContext
from middleware.envelope import Envelope
from middleware.errors import Refused, SchemaError
from middleware.ingress.endpoint import Incoming, IngressEndpoint
from middleware.ingress.publishing import Keyed
from middleware.ingress.reading import media_type
from middleware.validation import SchemaCheck, load_schema

__all__ = ["RestInbound", "default_dedupe"]

log = structlog.get_logger(__name__)


class RestInbound(IngressEndpoint[None]):
    """One configured webhook endpoint mounted on the shared ingress."""

    adapter = "rest"
    refused_event = "webhook rejected"
    failed_event = "webhook handling failed"

    def __init__(self, config: RestEndpointConfig) -> None:
        accepts_ce = config.cloudevents == "accept"
        extra = [STRUCTURED] if accepts_ce and STRUCTURED not in config.content_types else []
        super().__init__(config, [*config.content_types, *extra])
        self._config = config
        self._accepts_ce = accepts_ce
        self._deriver = None if config.derive is None else compile_derive(config.derive)
        dedupe = default_dedupe(config)
        # deduping on the derived id reuses the derived value instead of computing it twice
        self._dedupe_on_id = (dedupe is not None and config.derive is not None
                              and dedupe is config.derive.id)
        self._dedupe = None if dedupe is None else compile_rule(dedupe, "dedupe")
        self._verifier: Verifier | None = None
        self._schema: SchemaCheck | None = None
        self._signs_url = isinstance(config.auth, HubspotAuth)

    def start(self, context: AdapterContext) -> None:
        config = self._config
        if config.auth is not None:
            self._verifier = build_verifier(config.auth, f"inbound.{config.name}.auth")
        schema_doc = None
        if config.json_schema is not None:
            path = context.base_dir / config.json_schema
            self._schema = load_schema(path)
            schema_doc = json.loads(path.read_text(encoding="utf-8"))
        self.mount(context)
        assert context.ingress is not None  # mount refuses to run without one
        document_for(context.ingress).add(config, schema_doc)
        log.info("REST endpoint ready", endpoint=config.name, path=config.path,
                 auth=getattr(config.auth, "scheme", "none"))
        for risk in replay_risks(config):
            log.warning("webhook replay risk", endpoint=config.name, detail=risk)

    async def parse(self, request: Request, body: bytes) -> Incoming[None]:
        if self._verifier is not None:
            url = str(request.url) if self._signs_url else ""  # only HubSpot signs the URL
            self._verifier.verify(SignedRequest(request.method, url, request.headers,
                                                request.query_params, body), time.time())
        document = parse_json(body)
        content_type = media_type(request.headers.get("content-type"))
        if self._accepts_ce and is_cloudevent(content_type, request.headers):
            return Incoming([self._cloudevent(content_type, request.headers, document)])
        if self._deriver is None:
            raise Refused(415, "content_type", "not a CloudEvent",
                          "this endpoint takes CloudEvents only: send application/"
                          "cloudevents+json (structured mode) or ce-* headers (binary mode)")
        batch = self._config.batch and isinstance(document, list)
        events = document if batch else [document]
        keyed = [self._envelope(i if batch else None, event, request.headers)
                 for i, event in enumerate(events)]
        return Incoming(_unique_keys(keyed))

    def _cloudevent(self, content_type: str, headers: Mapping[str, str], document: Any) -> Keyed:
        """(delivery id, envelope) of a CloudEvent; its source and id identify it (the spec)."""
        envelope = from_request(content_type, headers, document)
        self._check_schema(envelope.data, "the event's data", "data.")
        key = self._dedupe(document, headers) if self._dedupe else None
        return key or f"{envelope.source} {envelope.id}", envelope

    def _check_schema(self, event: Any, label: str, where: str) -> None:
        if self._schema is not None:
            try:
                self._schema(event)
            except SchemaError as exc:
                raise Refused(422, "schema", "schema violation",
                              f"{label}: {exc}; fix the event or the schema",
                              extra={"path": f"{where}{exc.path}".rstrip(".")}) from None

    def _envelope(
        self, index: int | None, event: Any, headers: Mapping[str, str]
    ) -> Keyed:
        """(delivery id, envelope) of one event, or 422 naming the event and field."""
        where = "" if index is None else f"{index}."
        label = "the body" if index is None else f"event {index} of the batch"
        self._check_schema(event, label, where)
        assert self._deriver is not None  # parse() answers 415 without one
        try:
            derived = self._deriver.derive(event, headers)
            if self._dedupe_on_id:
                key = derived.id
            else:
                key = self._dedupe(event, headers) if self._dedupe else None
        except DerivationError as exc:
            raise Refused(422, "schema", "cannot derive event attributes",
                          f"{label}: {exc}; fix the 'derive' rules or send the field",
                          extra={"path": f"derive.{exc.field}"}) from None
        envelope = Envelope.new(
            source=self._config.envelope_source,
            type=f"{self._config.system}.{derived.entity}.{derived.action}",
            data=event, subject=derived.subject, id=derived.id or key, time=derived.time,
        )
        return key, envelope


def _unique_keys(
    keyed: list[Keyed],
) -> list[Keyed]:
    """A per-request delivery id (a header) shared by a batch's events gets '#<n>' suffixes."""
    keys = [key for key, _ in keyed if key is not None]
    if len(keys) == len(set(keys)):
        return keyed
    out: list[Keyed] = []
    for n, (key, envelope) in enumerate(keyed):
        if key is None:
            out.append((key, envelope))
            continue
        unique = f"{key}#{n}"
        if envelope.id == key:
            envelope = envelope.model_copy(update={"id": unique, "correlationid": unique})
        out.append((unique, envelope))
    return out
