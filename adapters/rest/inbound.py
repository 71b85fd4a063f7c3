"""REST webhook endpoint: authenticate, check, parse, derive, publish confirmed, then answer.

The order of checks keeps cheap refusals first and never reads more than the size limit:
client certificate where configured (403) -> declared size (413) -> media type (415) ->
streamed size (413) -> signature over the raw bytes (401) -> JSON (400) -> schema and
derivation per event (422) -> delivery-id claim (200 when published before, 503 + Retry-After
while a concurrent copy publishes it or the store fails) -> publish with confirms (202, or 503 +
Retry-After when the broker did not confirm everything).
Nothing is published for a request that fails any check, and nothing is answered 2xx unless it
is stored.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

import anyio
import orjson
import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adapters._derive import DerivationError, compile_derive, compile_rule
from adapters.rest.body import Rejected, parse_json, read_body
from adapters.rest.inbound_config import BasicAuth, HubspotAuth, RestEndpointConfig
from adapters.rest.openapi import document_for
from middleware.ingress.loop import LoopPublisher
from adapters.rest.replay import default_dedupe, replay_risks
from adapters.rest.signatures import AuthError, SignedRequest, Verifier, build_verifier
from middleware import metrics
from middleware.adapter import AdapterContext
from middleware.broker.ingest import check_confirms
from middleware.ingress.publishing import InProgress, StoreFailed, publish_once
from middleware.envelope import Envelope
from middleware.errors import BrokerError, FieldTooLong, SchemaError, SilobridgeError
from middleware.tls import ClientCertCheck
from middleware.validation import SchemaCheck, load_schema

__all__ = ["RestInbound", "default_dedupe"]

log = structlog.get_logger(__name__)

class RestInbound:
    """One configured webhook endpoint mounted on the shared ingress."""

    def __init__(self, config: RestEndpointConfig) -> None:
        self.name = config.name
        self._config = config
        self._deriver = compile_derive(config.derive)
        dedupe = default_dedupe(config)
        # deduping on the derived id reuses the derived value instead of computing it twice
        self._dedupe_on_id = dedupe is not None and dedupe is config.derive.id
        self._dedupe = None if dedupe is None else compile_rule(dedupe, "dedupe")
        self._namespace = f"ingress:{config.name}"
        self._verifier: Verifier | None = None
        self._schema: SchemaCheck | None = None
        self._context: AdapterContext | None = None
        self._publisher: LoopPublisher | None = None
        self._closing = False
        self._signs_url = isinstance(config.auth, HubspotAuth)
        self._client_cert = (ClientCertCheck(config.client_cert) if config.client_cert
                             else None)
        self._received = metrics.RECEIVED.labels(config.name, "rest")

    def start(self, context: AdapterContext) -> None:
        config = self._config
        if context.ingress is None:
            raise SilobridgeError(f"REST endpoint {config.name!r} needs the ingress role")
        if config.auth is not None:
            self._verifier = build_verifier(config.auth, f"inbound.{config.name}.auth")
        schema_doc = None
        if config.json_schema is not None:
            path = context.base_dir / config.json_schema
            self._schema = load_schema(path)
            schema_doc = json.loads(path.read_text(encoding="utf-8"))
        self._context = context
        self._publisher = LoopPublisher(context)
        context.ingress.add_route(config.path, self.handle, ["POST"], config.name,
                                  client_cert=config.client_cert)
        document_for(context.ingress).add(config, schema_doc)
        log.info("REST endpoint ready", endpoint=config.name, path=config.path,
                 auth=getattr(config.auth, "scheme", "none"))
        for risk in replay_risks(config):
            log.warning("webhook replay risk", endpoint=config.name, detail=risk)

    def close(self) -> None:
        """New requests get 503 (retry elsewhere or later); in-flight ones finish."""
        self._closing = True

    async def handle(self, request: Request) -> Response:
        try:
            return await self._handle(request)
        except FieldTooLong as exc:  # an id or type AMQP cannot carry: only the sender can fix it
            rejected = Rejected(400, "field_too_long", "value too long", str(exc),
                                extra={"field": exc.field, "limit": exc.limit})
        except Rejected as exc:
            rejected = exc
        except Exception as exc:  # the last line of defence: one request fails, not the endpoint
            metrics.REJECTED.labels(self.name, "rest", "internal_error").inc()
            # through the masking logger; the sender sees no traceback, the operator the whole
            log.exception("webhook handling failed", endpoint=self.name,
                          error_type=type(exc).__name__)
            return JSONResponse({"error": "internal error", "detail": (
                "the request could not be handled and its events may or may not be stored; "
                "retry later (a resend with the same delivery id is deduped) and tell the "
                f"operator: the error is logged under endpoint {self.name!r}")}, status_code=500)
        metrics.REJECTED.labels(self.name, "rest", rejected.reason).inc()
        log.warning("webhook rejected", endpoint=self.name, status=rejected.status,
                    reason=rejected.reason, detail=rejected.detail)
        return rejected.response()

    async def _handle(self, request: Request) -> Response:
        config = self._config
        if self._closing:
            raise self._unavailable("the endpoint is shutting down")
        if self._client_cert is not None:
            refusal = self._client_cert.refusal(request.scope)
            if refusal is not None:
                raise Rejected(403, "client_cert", "client certificate refused", refusal)
        body = await read_body(request, config.max_body_bytes, config.content_types)
        if self._verifier is not None:
            url = str(request.url) if self._signs_url else ""  # only HubSpot signs the URL
            signed = SignedRequest(request.method, url, request.headers,
                                   request.query_params, body)
            try:
                self._verifier.verify(signed, time.time())
            except AuthError as exc:
                basic = isinstance(config.auth, BasicAuth) and exc.reason == "missing"
                headers = {"WWW-Authenticate": 'Basic realm="silobridge"'} if basic else None
                raise Rejected(401, "bad_signature", f"{exc.reason} credentials", str(exc),
                               headers=headers) from None
        document = parse_json(body)
        batch = config.batch and isinstance(document, list)
        events = document if batch else [document]
        keyed = [self._envelope(i if batch else None, event, request.headers)
                 for i, event in enumerate(events)]
        keyed = _unique_keys(keyed)
        if all(key is None for key, _ in keyed):  # nothing to dedupe: no store, no thread
            ids, duplicates = await self._publish([envelope for _, envelope in keyed]), 0
        else:
            ids, duplicates = await anyio.to_thread.run_sync(self._store, keyed)
        if keyed and not ids:
            metrics.REJECTED.labels(self.name, "rest", "duplicate").inc()
            log.info("duplicate delivery", endpoint=self.name, events=len(keyed))
            return JSONResponse({"status": "duplicate", "ids": [e.id for _, e in keyed],
                                 "duplicates": duplicates}, status_code=200)
        self._received.inc(len(ids))
        # No log line per accepted request: at high rates it costs more than the rest of the 202
        # (silobridge_received_total counts them; the answer lists the event ids for the sender).
        return Response(orjson.dumps({"status": "accepted", "ids": ids, "duplicates": duplicates}),
                        status_code=202, media_type="application/json")

    def _envelope(
        self, index: int | None, event: Any, headers: Mapping[str, str]
    ) -> tuple[str | None, Envelope]:
        """(delivery id, envelope) of one event, or 422 naming the event and field."""
        where = "" if index is None else f"{index}."
        label = "the body" if index is None else f"event {index} of the batch"
        if self._schema is not None:
            try:
                self._schema(event)
            except SchemaError as exc:
                raise Rejected(422, "schema", "schema violation",
                               f"{label}: {exc}; fix the event or the schema",
                               extra={"path": f"{where}{exc.path}".rstrip(".")}) from None
        try:
            derived = self._deriver.derive(event, headers)
            if self._dedupe_on_id:
                key = derived.id
            else:
                key = self._dedupe(event, headers) if self._dedupe else None
        except DerivationError as exc:
            raise Rejected(422, "schema", "cannot derive event attributes",
                           f"{label}: {exc}; fix the 'derive' rules or send the field",
                           extra={"path": f"derive.{exc.field}"}) from None
        envelope = Envelope.new(
            source=self._config.envelope_source,
            type=f"{self._config.system}.{derived.entity}.{derived.action}",
            data=event, subject=derived.subject, id=derived.id or key, time=derived.time,
        )
        return key, envelope

    async def _publish(self, envelopes: list[Envelope]) -> list[str]:
        """Publish from the event loop and await the confirms there.

        Publishing never blocks, so without a dedupe store to ask there is no reason to hop to a
        worker thread: the hop and the extra threads fighting for the GIL cost more than the rest
        of the request (py-spy, bench/ingress.py).
        """
        assert self._context is not None and self._publisher is not None
        if not envelopes:  # an empty batch stores nothing and is still accepted
            return []
        futures = [self._publisher.publish(envelope) for envelope in envelopes]
        _done, not_done = await asyncio.wait(futures,
                                             timeout=self._context.broker.publish_timeout)
        try:
            check_confirms(futures, len(not_done))
        except BrokerError as exc:
            for future in not_done:  # their outcome no longer matters; do not log it as lost
                future.add_done_callback(_retrieve)
            raise self._unavailable(str(exc)) from None
        return [envelope.id for envelope in envelopes]

    def _store(self, keyed: list[tuple[str | None, Envelope]]) -> tuple[list[str], int]:
        """Publish the events whose delivery id this request claims (worker thread: the store
        blocks). A concurrent copy holding a claim is answered 503, not 200: its publish may
        still fail, and then this copy must be the one that is retried."""
        assert self._context is not None
        try:
            published = publish_once(self._context, self._namespace, keyed, self.name)
        except InProgress as exc:
            raise self._unavailable(f"{exc}; a retry learns its outcome", "in_progress",
                                    "delivery in progress") from None
        except StoreFailed as exc:
            raise self._unavailable(str(exc), "store_unavailable") from None
        except BrokerError as exc:
            raise self._unavailable(str(exc)) from None
        return published.ids, published.duplicates

    def _unavailable(self, why: str, reason: str = "broker_unavailable",
                     error: str = "temporarily unable to store events") -> Rejected:
        seconds = self._config.retry_after
        return Rejected(503, reason, error,
                        f"{why}; nothing was stored, retry in {seconds}s",
                        headers={"Retry-After": str(seconds)})


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _unique_keys(
    keyed: list[tuple[str | None, Envelope]],
) -> list[tuple[str | None, Envelope]]:
    """A per-request delivery id (a header) shared by a batch's events gets '#<n>' suffixes."""
    keys = [key for key, _ in keyed if key is not None]
    if len(keys) == len(set(keys)):
        return keyed
    out: list[tuple[str | None, Envelope]] = []
    for n, (key, envelope) in enumerate(keyed):
        if key is None:
            out.append((key, envelope))
            continue
        unique = f"{key}#{n}"
        if envelope.id == key:
            envelope = envelope.model_copy(update={"id": unique, "correlationid": unique})
        out.append((unique, envelope))
    return out
