"""The config file, as pydantic models: the models are the documentation.

Every field has a description; unknown keys are errors (``extra="forbid"``). Adapter-specific
sections (``inbound[*]`` and ``routes[*].target``) are validated in a second pass by the adapter's
own model, found through the registry (see ``loader.py``).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from middleware.adapter import AdapterConfig

__all__ = [
    "BrokerConfig",
    "Config",
    "EndpointLimits",
    "HttpLimits",
    "IngressConfig",
    "IngressLimits",
    "OpsConfig",
    "RetryPolicy",
    "RouteConfig",
    "StoreConfig",
    "TlsConfig",
]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_PATTERN = re.compile(r"^([a-z0-9_-]+|\*|#)(\.([a-z0-9_-]+|\*|#))*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TlsConfig(_Strict):
    ca_file: str | None = Field(None, description="CA bundle to verify the broker (amqps://).")
    cert_file: str | None = Field(None, description="Client certificate for mutual TLS.")
    key_file: str | None = Field(None, description="Private key of the client certificate.")
    server_hostname: str | None = Field(
        None, description="Name to verify in the broker certificate when it differs from the URL."
    )


class BrokerConfig(_Strict):
    url: str = Field(
        "amqp://guest:guest@127.0.0.1:5672/%2F",
        description="AMQP URL; amqp:// or amqps://. Usually '${AMQP_URL:-amqp://...}'.",
        examples=["${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}"],
    )
    prefetch: int = Field(
        500, ge=1, le=65535, description="Unacked messages per consumer (QoS prefetch)."
    )
    publish_timeout: float = Field(
        10.0, gt=0, description="Seconds to wait for a publisher confirm before failing."
    )
    blocked_timeout: float = Field(
        30.0, gt=0,
        description="Seconds a broker resource alarm may block us before the connection is reset.",
    )
    heartbeat: int = Field(30, ge=0, description="AMQP heartbeat seconds (0 disables).")
    reconnect_max_delay: float = Field(
        30.0, gt=0, description="Cap of the exponential reconnect backoff, seconds."
    )
    tls: TlsConfig = Field(default_factory=TlsConfig, description="TLS options for amqps://.")

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not value.startswith(("amqp://", "amqps://")):
            raise ValueError("must start with amqp:// or amqps://")
        return value


class OpsConfig(_Strict):
    host: str = Field("127.0.0.1", description="Address of the ops HTTP server.")
    port: int = Field(9080, ge=0, le=65535, description="/healthz, /readyz, /metrics port.")


class HttpLimits(_Strict):
    """What one HTTP request head may cost before any endpoint sees it (ingress and ops)."""

    max_header_bytes: int = Field(
        8192, ge=256, description="Largest header line (name and value) in bytes; beyond: 431."
    )
    max_head_bytes: int = Field(
        32768, ge=1024,
        description="Largest request head (request line and all headers) in bytes; beyond: 431.",
    )
    max_headers: int = Field(100, ge=8, description="Most header lines per request; beyond: 431.")
    header_timeout: float = Field(
        10.0, gt=0,
        description="Seconds a client may take to send a complete request head (slowloris "
        "guard); then the connection is closed (408 when part of a head arrived).",
    )


class EndpointLimits(_Strict):
    """Rate and concurrency limits of one ingress endpoint; unset means unlimited."""

    rate: float | None = Field(
        None, gt=0, description="Requests per second the endpoint accepts from all senders "
        "together (token bucket); beyond: 429 with Retry-After.", examples=[200],
    )
    burst: int | None = Field(
        None, ge=1, description="Requests accepted at once before 'rate' applies; default: "
        "rate rounded up.",
    )
    client_rate: float | None = Field(
        None, gt=0, description="Requests per second accepted from one client address; "
        "beyond: 429 with Retry-After.", examples=[20],
    )
    client_burst: int | None = Field(
        None, ge=1, description="Requests one address may send at once; default: client_rate "
        "rounded up.",
    )
    max_concurrent: int | None = Field(
        256, ge=1, description="Requests the endpoint handles at the same time; beyond: 503 with "
        "Retry-After, before the body is read. null: unlimited.",
    )
    retry_after: int = Field(
        1, ge=1, description="Retry-After seconds answered when max_concurrent is reached."
    )


class IngressLimits(EndpointLimits):
    """Limits of every endpoint, with per-endpoint overrides under ``endpoints``."""

    max_clients: int = Field(
        10000, ge=1, description="Client addresses remembered per endpoint for client_rate; the "
        "least recently seen is forgotten first, so varying addresses cannot exhaust memory.",
    )
    endpoints: dict[str, EndpointLimits] = Field(
        default_factory=dict,
        description="Overrides by inbound endpoint name; fields not given keep the values above.",
        examples=[{"shopify-orders": {"client_rate": 5, "max_concurrent": 16}}],
    )

    def for_endpoint(self, name: str) -> EndpointLimits:
        """The limits of endpoint *name*: the defaults, overridden by what it sets itself."""
        defaults = EndpointLimits(**self.model_dump(include=set(EndpointLimits.model_fields)))
        override = self.endpoints.get(name)
        if override is None:
            return defaults
        return defaults.model_copy(update=override.model_dump(exclude_unset=True))


class IngressConfig(_Strict):
    host: str = Field("127.0.0.1", description="Address the REST/SOAP ingress listens on.")
    port: int = Field(8080, ge=0, le=65535, description="Ingress port (0 picks a free one).")
    http: HttpLimits = Field(
        default_factory=HttpLimits,
        description="Request-head limits and timeout; the ops listener applies them too.",
    )
    limits: IngressLimits = Field(
        default_factory=IngressLimits,
        description="Rate limits and concurrency caps per endpoint (REST and SOAP alike).",
    )


class RetryPolicy(_Strict):
    """Exponential backoff realised as retry tiers: one delay queue per attempt."""

    attempts: int = Field(5, ge=0, le=20, description="Retries before dead-lettering.")
    initial_delay: float = Field(1.0, gt=0, description="Delay of the first retry, seconds.")
    multiplier: float = Field(4.0, ge=1, description="Factor between consecutive delays.")
    max_delay: float = Field(900.0, gt=0, description="Cap of any one delay, seconds.")
    delivery_limit: int = Field(
        20, ge=1,
        description="Broker-side redelivery limit of the route queue (poison-message guard).",
    )

    def delays(self) -> list[float]:
        """Delay of each tier; the policy is derived, so only these numbers need configuring."""
        return [
            min(self.initial_delay * self.multiplier**n, self.max_delay)
            for n in range(self.attempts)
        ]


class StoreConfig(_Strict):
    kind: Literal["sqlite", "postgres"] = Field("sqlite", description="Store backend.")
    path: str = Field(
        "data/silobridge.db", description="SQLite file (relative to the working directory)."
    )
    dsn: str | None = Field(None, description="PostgreSQL DSN when kind is postgres.")
    retention_days: float = Field(
        7.0, gt=0,
        description="Delivered-id records older than this are deleted; keep it longer than a "
        "message can stay in retry tiers or be redelivered.",
    )

    @model_validator(mode="after")
    def _dsn_for_postgres(self) -> StoreConfig:
        if self.kind == "postgres" and not self.dsn:
            raise ValueError("kind 'postgres' needs a dsn, e.g. '${XREF_DSN}'")
        return self


class RouteConfig(_Strict):
    name: str = Field(description="Route name; names its queues. Lowercase, digits, - and _.")
    bind: list[str] = Field(
        min_length=1,
        description="Routing-key patterns on the events exchange ('crm.customer.*').",
    )
    filter: str | None = Field(
        None, description="CEL condition over the envelope ('event'); false -> acked, skipped."
    )
    mapping: str | None = Field(
        None, description="Mapping file (relative to the config file); none passes data as is."
    )
    reverse: bool = Field(False, description="Apply the mapping in reverse (ERP -> CRM).")
    target: AdapterConfig = Field(description="Where mapped payloads go; 'type' picks adapter.")
    retry: RetryPolicy | None = Field(None, description="Overrides the top-level retry policy.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use 1-63 lowercase letters, digits, '-' or '_'")
        return value

    @field_validator("bind")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not _PATTERN.match(pattern):
                raise ValueError(
                    f"{pattern!r} is not a routing-key pattern: dot-separated words, '*' or '#'"
                )
        return value


class Config(_Strict):
    broker: BrokerConfig = Field(default_factory=BrokerConfig, description="RabbitMQ.")
    ops: OpsConfig = Field(default_factory=OpsConfig, description="Ops HTTP server.")
    ingress: IngressConfig = Field(default_factory=IngressConfig, description="HTTP ingress.")
    retry: RetryPolicy = Field(default_factory=RetryPolicy, description="Default retry policy.")
    store: StoreConfig = Field(
        default_factory=StoreConfig, description="Idempotency, state and xref store."
    )
    inbound: list[AdapterConfig] = Field(
        default_factory=list, description="Inbound adapters (webhooks, SOAP endpoints, pollers)."
    )
    routes: list[RouteConfig] = Field(default_factory=list, description="Routes to run.")
    shutdown_grace: float = Field(
        20.0, gt=0, description="Seconds to finish in-flight work on SIGTERM."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        names = [r.name for r in self.routes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"route names must be unique; repeated: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _limited_endpoints_exist(self) -> Config:
        known = {str(getattr(section, "name", "")) for section in self.inbound}
        unknown = sorted(set(self.ingress.limits.endpoints) - known)
        if unknown:
            raise ValueError(
                f"ingress.limits.endpoints names no inbound endpoint: {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known)) or 'none'}"
            )
        return self

    def retry_for(self, route: RouteConfig) -> RetryPolicy:
        return route.retry or self.retry
