"""Config of the REST inbound endpoint (``inbound[*]`` with ``type: rest``) and its auth schemes.

    inbound:
      - type: rest
        name: shopify-orders
        path: /webhooks/shopify/orders
        system: crm
        derive:
          entity: {value: order}
          action: {header: X-Shopify-Topic, map: {orders/create: created, orders/updated: updated}}
          subject: {path: id}
          time: {path: updated_at}
        json_schema: schemas/shopify/order.json
        auth: {scheme: shopify, secret_env: SHOPIFY_WEBHOOK_SECRET}

Secrets are named by environment variable (``secret_env``) or file (``secret_file``), never
written into the config; during a rotation ``previous_secret_env`` (or ``previous_secret_file``)
names the secret still accepted until senders switched.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from adapters._derive import Derive, ValueRule
from middleware.ingress.config import EndpointConfig
from middleware.secrets import SecretFields

__all__ = [
    "ApiKeyAuth",
    "BasicAuth",
    "GithubAuth",
    "HmacAuth",
    "HubspotAuth",
    "InboundAuth",
    "RestEndpointConfig",
    "ShopifyAuth",
    "StandardWebhooksAuth",
    "StripeAuth",
]

_PLACEHOLDER = re.compile(r"\{(\w*)\}")
_PLACEHOLDERS = frozenset({"id", "timestamp", "body"})


class _Secrets(SecretFields):
    model_config = ConfigDict(extra="forbid")
    optional_secrets = frozenset({"previous_secret"})

    secret_env: str | None = Field(
        None,
        description="Environment variable holding the secret (key, password or signing secret); "
        "or use secret_file.",
        examples=["SHOPIFY_WEBHOOK_SECRET"],
    )
    secret_file: str | None = Field(
        None,
        description="File holding the secret (one trailing newline ignored), e.g. a mounted "
        "Kubernetes Secret; relative to the config file. Instead of secret_env.",
        examples=["/run/secrets/silobridge/shopify-webhook-secret"],
    )
    previous_secret_env: str | None = Field(
        None, description="Second secret still accepted during a rotation (environment variable)."
    )
    previous_secret_file: str | None = Field(
        None, description="Second secret still accepted during a rotation (file); instead of "
        "previous_secret_env.",
    )


class HmacAuth(_Secrets):
    """Generic HMAC-SHA256 for senders with their own header conventions.

    Signing only the body leaves the delivery id and the time unsigned, so a captured request
    can be sent again with another id; ``signed_payload`` can sign both with the body
    (``{id}.{timestamp}.{body}``, the Standard Webhooks layout).
    """

    scheme: Literal["hmac"] = Field(description="Generic HMAC-SHA256 signature header.")
    header: str = Field(description="Header carrying the signature.", examples=["X-Signature"])
    encoding: Literal["hex", "base64"] = Field("hex", description="How the digest is encoded.")
    prefix: str = Field("", description="Text before the digest, e.g. 'sha256='.")
    id_header: str | None = Field(
        None, description="Header with the sender's delivery id, signed through '{id}' in "
        "signed_payload; the default dedupe key, so a replay is answered as a duplicate.",
        examples=["X-Request-Id"],
    )
    timestamp_header: str | None = Field(
        None, description="Header with the Unix time of signing (seconds, or milliseconds); "
        "enables the stale check, which stops replays only when '{timestamp}' is signed too.",
        examples=["X-Timestamp"],
    )
    tolerance: int = Field(300, ge=1, description="Seconds a signed timestamp stays valid.")
    signed_payload: str = Field(
        "{body}",
        description="What is signed: the raw body '{body}' with, optionally, '{id}' (the "
        "id_header value) and '{timestamp}', e.g. '{id}.{timestamp}.{body}' (replay-proof), "
        "'{timestamp}.{body}' or Slack's 'v0:{timestamp}:{body}'.",
        examples=["{id}.{timestamp}.{body}"],
    )

    @model_validator(mode="after")
    def _payload_template(self) -> HmacAuth:
        unknown = sorted(set(_PLACEHOLDER.findall(self.signed_payload)) - _PLACEHOLDERS)
        if unknown:
            raise ValueError(f"signed_payload: unknown placeholder(s) {unknown}; use "
                             "{id}, {timestamp} and {body}")
        if self.signed_payload.count("{body}") != 1:
            raise ValueError("signed_payload must contain '{body}' exactly once")
        if "{timestamp}" in self.signed_payload and not self.timestamp_header:
            raise ValueError("signed_payload uses {timestamp}: set timestamp_header too")
        if "{id}" in self.signed_payload and not self.id_header:
            raise ValueError("signed_payload uses {id}: set id_header too")
        if self.id_header and "{id}" not in self.signed_payload:
            raise ValueError("id_header is set but not signed: add '{id}' to signed_payload, "
                             "e.g. '{id}.{timestamp}.{body}' (or dedupe on it without "
                             "id_header, accepting the replay risk)")
        return self


class GithubAuth(_Secrets):
    scheme: Literal["github"] = Field(description="X-Hub-Signature-256: sha256=<hex HMAC>.")


class ShopifyAuth(_Secrets):
    scheme: Literal["shopify"] = Field(description="X-Shopify-Hmac-SHA256: base64 HMAC of body.")


class StripeAuth(_Secrets):
    scheme: Literal["stripe"] = Field(description="Stripe-Signature: t=<unix>,v1=<hex>.")
    tolerance: int = Field(300, ge=1, description="Seconds a signature timestamp stays valid.")


class HubspotAuth(_Secrets):
    scheme: Literal["hubspot"] = Field(
        description="X-HubSpot-Signature-v3 over method+URI+body+timestamp (app client secret)."
    )
    max_age: int = Field(300, ge=1, description="Seconds X-HubSpot-Request-Timestamp is valid.")
    public_url: str | None = Field(
        None,
        description="Scheme and host HubSpot calls (behind a proxy the ingress sees another).",
        examples=["https://hooks.example.com"],
    )


class StandardWebhooksAuth(_Secrets):
    """Standard Webhooks (standardwebhooks.com): id, time and body signed together.

    The secret is ``whsec_<base64 key>``; resends keep their ``webhook-id``, which is the
    default dedupe key, and a replay outside ``tolerance`` is refused as stale.
    """

    scheme: Literal["standard_webhooks"] = Field(
        description="webhook-signature: v1,<base64 HMAC of '{webhook-id}.{webhook-timestamp}."
        "{body}'> (several entries, space separated, during a rotation)."
    )
    tolerance: int = Field(
        300, ge=1, description="Seconds webhook-timestamp may be away from now (either way)."
    )


class ApiKeyAuth(_Secrets):
    scheme: Literal["api_key"] = Field(description="A shared key in a header or query parameter.")
    header: str | None = Field("X-API-Key", description="Header carrying the key.")
    query: str | None = Field(
        None, description="Query parameter carrying the key instead (Dynamics 365 'code')."
    )


class BasicAuth(_Secrets):
    scheme: Literal["basic"] = Field(description="HTTP basic auth; the secret is the password.")
    username: str = Field(description="Expected user name.")


InboundAuth = Annotated[
    HmacAuth | GithubAuth | ShopifyAuth | StripeAuth | HubspotAuth | StandardWebhooksAuth
    | ApiKeyAuth | BasicAuth,
    Field(discriminator="scheme"),
]


class RestEndpointConfig(EndpointConfig):
    """One webhook endpoint on the shared ingress (fields every endpoint has: EndpointConfig)."""

    type: Literal["rest"] = Field("rest", description="Selects this adapter.")
    derive: Derive | None = Field(
        None, description="Where entity, action, subject, time and id come from; required "
        "unless cloudevents is 'accept' (then it applies to requests that are not CloudEvents).")
    cloudevents: Literal["off", "accept"] = Field(
        "off", description="'accept': a CloudEvent in structured mode (Content-Type "
        "application/cloudevents+json) or binary mode (ce-* headers, JSON body) is published "
        "with its own id, source, type, subject, time and extensions instead of derived ones.")
    json_schema: str | None = Field(
        None, description="JSON Schema file (relative to the config) each event must match."
    )
    auth: InboundAuth | None = Field(None, description="How senders prove who they are.")
    dedupe: ValueRule | None = Field(
        None,
        description="Provider delivery id to answer resends 200 without publishing; default "
        "per auth scheme (Shopify/GitHub delivery header, Stripe 'id', HubSpot 'eventId', "
        "Standard Webhooks 'webhook-id', hmac 'id_header'). Dedupe on a value the signature "
        "covers, or a replay with a new id is published again (validate warns).",
        examples=[{"header": "X-Request-Id"}],
    )
    batch: bool = Field(True, description="A JSON array body carries one event per element.")
    content_types: list[str] = Field(
        default_factory=lambda: ["application/json"],
        min_length=1, description="Accepted media types; others get 415 "
        "(application/cloudevents+json is added with cloudevents: accept).",
    )

    @model_validator(mode="after")
    def _derive_or_cloudevents(self) -> RestEndpointConfig:
        if self.derive is None and self.cloudevents == "off":
            raise ValueError("set 'derive' (where entity, action and subject come from), or "
                             "'cloudevents: accept' for senders of CloudEvents")
        return self
