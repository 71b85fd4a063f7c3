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
    "IngressConfig",
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
    """TLS to the broker; used when ``broker.url`` starts with ``amqps://``."""

    ca_file: str | None = Field(
        None,
        description="PEM CA bundle that signed the broker's certificate; unset: the system CAs.",
        examples=["/etc/silobridge/tls/broker-ca.pem"],
    )
    cert_file: str | None = Field(
        None,
        description="PEM client certificate for brokers that require one (mutual TLS); may "
        "hold the private key too.",
        examples=["/etc/silobridge/tls/client.pem"],
    )
    key_file: str | None = Field(
        None,
        description="Unencrypted PEM private key of cert_file, when not inside cert_file.",
        examples=["/etc/silobridge/tls/client.key"],
    )
    server_hostname: str | None = Field(
        None,
        description="Name to verify in the broker certificate when it differs from the URL "
        "host (a broker reached by IP address or through a tunnel).",
        examples=["rabbitmq.internal.example.com"],
    )

    @model_validator(mode="after")
    def _key_needs_cert(self) -> TlsConfig:
        if self.key_file and not self.cert_file:
            raise ValueError("key_file is set without cert_file: a client certificate needs "
                             "both (or cert_file alone when it holds the key)")
        return self


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


class IngressConfig(_Strict):
    host: str = Field("127.0.0.1", description="Address the REST/SOAP ingress listens on.")
    port: int = Field(8080, ge=0, le=65535, description="Ingress port (0 picks a free one).")


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

    def retry_for(self, route: RouteConfig) -> RetryPolicy:
        return route.retry or self.retry
