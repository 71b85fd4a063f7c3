"""The config file, as pydantic models: the models are the documentation.

Every field has a description; unknown keys are errors (``extra="forbid"``). Adapter-specific
sections (``inbound[*]`` and ``routes[*].target``) are validated in a second pass by the adapter's
own model, found through the registry (see ``loader.py``).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from middleware.config.adapter_base import AdapterConfig
from middleware.config.console import ConsoleConfig, OidcConfig, OidcRoleRule
from middleware.config.enrich import EnrichStep
from middleware.config.strict import Strict as _Strict
from middleware.config.sync import ConflictConfig, EchoConfig, OriginMarker, SyncConfig
from middleware.config.tls import ClientCertConfig, ServerTlsConfig, TargetTlsConfig, TlsConfig

__all__ = [
    "BrokerConfig",
    "ClientCertConfig",
    "Config",
    "ConflictConfig",
    "ConsoleConfig",
    "EchoConfig",
    "EndpointLimits",
    "HttpLimits",
    "IngressConfig",
    "IngressLimits",
    "OidcConfig",
    "OidcRoleRule",
    "OpsConfig",
    "OriginMarker",
    "ProcessesConfig",
    "RetryPolicy",
    "RouteConfig",
    "ServerTlsConfig",
    "StoreConfig",
    "SyncConfig",
    "TargetTlsConfig",
    "TlsConfig",
]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_PATTERN = re.compile(r"^([a-z0-9_-]+|\*|#)(\.([a-z0-9_-]+|\*|#))*$")


class BrokerConfig(_Strict):
    url: str = Field(
        "amqp://guest:guest@127.0.0.1:5672/%2F",
        description="AMQP URL; amqp:// or amqps://. Usually '${AMQP_URL:-amqp://...}'; a "
        "password from a file: 'amqp://user:${file:/run/secrets/amqp-password}@host/'. "
        "For a RabbitMQ cluster, the URLs of several nodes separated by commas "
        "('amqp://u:p@node1/,amqp://u:p@node2/'): a connection that fails or is lost moves "
        "on to the next node and re-declares the topology there (see docs/reliability.md).",
        examples=["${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}"],
        repr=False,  # it holds the broker password
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
    heartbeat: int = Field(
        30, ge=0,
        description="AMQP heartbeat seconds (0 disables). A connection on which nothing "
        "arrived for 1.5 times this long (the broker sends a heartbeat every half interval) "
        "is dropped as silent and reconnected: a silent broker is detected within twice the "
        "heartbeat, even when the network lost it without a FIN or an RST.",
    )
    connect_timeout: float = Field(
        10.0, gt=0,
        description="Seconds a connection attempt may take, TCP and AMQP handshake together; "
        "a broker that accepts the TCP connection but never answers fails within this time.",
    )
    reconnect_max_delay: float = Field(
        30.0, gt=0, description="Cap of the exponential reconnect backoff, seconds."
    )
    tls: TlsConfig = Field(default_factory=TlsConfig, description="TLS options for amqps://.")

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        for number, url in enumerate(_split_urls(value), 1):
            if not url.startswith(("amqp://", "amqps://")):
                where = f"URL {number} of the list" if "," in value else "it"
                raise ValueError(f"{where} must start with amqp:// or amqps://")
        return value

    @property
    def urls(self) -> list[str]:
        """The node URLs, in the order connections try them."""
        return _split_urls(self.url)


def _split_urls(value: str) -> list[str]:
    """Comma-separated URLs; a comma inside a password must be written %2C, as in any URL."""
    return [part.strip() for part in value.split(",")]


class OpsConfig(_Strict):
    host: str = Field("127.0.0.1", description="Address of the ops HTTP server.")
    port: int = Field(9080, ge=0, le=65535, description="/healthz, /readyz, /metrics port.")
    tls: ServerTlsConfig | None = Field(None, description="Serve the ops endpoints over HTTPS.")


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
    tls: ServerTlsConfig | None = Field(
        None, description="Serve the ingress over HTTPS (and verify client certificates)."
    )
    http: HttpLimits = Field(
        default_factory=HttpLimits,
        description="Request-head limits and timeout; the ops listener applies them too.",
    )
    limits: IngressLimits = Field(
        default_factory=IngressLimits,
        description="Rate limits and concurrency caps per endpoint (REST and SOAP alike).",
    )
    reuse_port: bool = Field(
        False, description="Bind with SO_REUSEPORT so that several ingress processes share the "
        "port (the kernel spreads connections); on with processes.ingress above 1.",
    )


class ProcessesConfig(_Strict):
    """How many processes ``silobridge run`` starts per role (``docs/architecture.md``)."""

    ingress: int = Field(
        1, ge=1, le=64, description="Ingress processes; above 1 they share the ingress port "
        "(SO_REUSEPORT) and run under a supervisor.",
    )
    worker: int = Field(
        1, ge=1, le=64, description="Worker processes (competing consumers of every route); "
        "above 1 they run under a supervisor.",
    )

    @property
    def supervised(self) -> bool:
        return self.ingress > 1 or self.worker > 1


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
    """Where all durable state lives: idempotency records and ingress claims, cross-references
    and named state such as poller watermarks. One backend holds all of it."""

    kind: Literal["sqlite", "postgres"] = Field(
        "sqlite",
        description="Store backend: 'sqlite' (embedded file, one process) or 'postgres' (shared "
        "by several replicas).",
    )
    path: str = Field(
        "data/silobridge.db", description="SQLite file (relative to the working directory)."
    )
    dsn: str | None = Field(
        None, repr=False,  # it may hold the database password
        description="PostgreSQL DSN when kind is postgres; keep it out of the file with "
        "'${STORE_DSN}'. Tables go to the first schema of the search_path (set it in the DSN: "
        "'?options=-csearch_path%3Dsilobridge').",
        examples=["${STORE_DSN}", "postgresql://silobridge@db:5432/silobridge"],
    )
    dsn_file: str | None = Field(
        None,
        description="A file holding the PostgreSQL DSN (a mounted secret), read at start; "
        "instead of dsn.",
        examples=["/run/secrets/store-dsn"],
    )
    pool_size: int = Field(
        10, ge=1, le=1000,
        description="Most PostgreSQL connections this process opens (one pool for all stores).",
    )
    statement_timeout: float = Field(
        5.0, gt=0,
        description="Seconds any one PostgreSQL statement may run before it is cancelled and "
        "the call fails as retryable (migrations are exempt).",
    )
    connect_timeout: float = Field(
        5.0, gt=0, description="Seconds to wait for a PostgreSQL connection."
    )
    retention_days: float = Field(
        7.0, gt=0,
        description="Delivered-id records older than this are deleted, and so is the state of "
        "a two-way subject last applied longer ago (docs/two-way.md); keep it longer than a "
        "message can stay in retry tiers or the DLQ before it is redelivered or replayed.",
    )

    @model_validator(mode="after")
    def _dsn_for_postgres(self) -> StoreConfig:
        if self.dsn and self.dsn_file:
            raise ValueError("set either dsn or dsn_file, not both")
        if self.kind == "postgres" and not (self.dsn or self.dsn_file):
            raise ValueError("kind 'postgres' needs a dsn (e.g. '${STORE_DSN}') or a dsn_file")
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
    enrich: list[EnrichStep] = Field(
        default_factory=list,
        description="Calls to systems (see 'systems') whose answers are merged into the payload, "
        "in order: before the mapping, or with after_mapping just before delivery. A failed "
        "call is retried or dead-lettered like a delivery, with stage 'enrich'.",
    )
    sync: SyncConfig | None = Field(
        None, description="Two-way sync: per-subject ordering, stale updates, echo suppression "
        "(docs/two-way.md). Decided on the event as it arrived, before any enrich step: an "
        "echo, a stale or a held event costs no enrich call."
    )

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
    systems: dict[str, AdapterConfig] = Field(
        default_factory=dict,
        description="Systems that enrich steps call, by name: 'type' picks the adapter (rest: "
        "GET requests below a base_url; soap: operations of a WSDL), with the same auth, TLS "
        "and timeouts as its targets.",
    )
    console: ConsoleConfig = Field(
        default_factory=ConsoleConfig, description="Admin API and web console."
    )
    audit: AdapterConfig | None = Field(
        None, description="Where every route's message outcomes are recorded, one row each "
        "(type: sql, see docs/warehouse.md); none when unset."
    )
    shutdown_grace: float = Field(
        20.0, gt=0, description="Seconds to finish in-flight work on SIGTERM."
    )
    processes: ProcessesConfig = Field(
        default_factory=ProcessesConfig,
        description="Processes per role; one of each runs in one process (the default).",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        names = [r.name for r in self.routes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"route names must be unique; repeated: {', '.join(dupes)}")
        return self

    @field_validator("systems")
    @classmethod
    def _system_names(cls, value: dict[str, AdapterConfig]) -> dict[str, AdapterConfig]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"system name {name!r}: use 1-63 lowercase letters, digits, "
                                 f"'-' or '_'")
        return value

    @model_validator(mode="after")
    def _supervised_ports(self) -> Config:
        if self.processes.supervised and self.ops.port == 0:
            raise ValueError(
                "processes above 1 need a fixed ops.port: the supervisor serves it and gives "
                "its processes the ports after it (ops.port + 1, + 2, ...); set ops.port")
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

    @model_validator(mode="after")
    def _echo_pairs(self) -> Config:
        """Echo suppression needs both routes: each reads the fingerprints the other wrote."""
        routes = {r.name: r for r in self.routes}
        for route in self.routes:
            echo = route.sync.echo if route.sync else None
            if echo is None:
                continue
            other = routes.get(echo.pair)
            back = other.sync.echo if other is not None and other.sync else None
            if other is None or other is route or back is None or back.pair != route.name:
                raise ValueError(
                    f"route {route.name!r}: sync.echo.pair names {echo.pair!r}, which must be "
                    f"a route whose sync.echo.pair names {route.name!r} (the opposite direction "
                    f"over the same entity)")
        return self

    def echo_pair(self, route: RouteConfig) -> RouteConfig | None:
        """The route in the opposite direction whose writes this route's echoes are."""
        if route.sync is None or route.sync.echo is None:
            return None
        return next((r for r in self.routes if r.name == route.sync.echo.pair), None)

    def retry_for(self, route: RouteConfig) -> RetryPolicy:
        return route.retry or self.retry
