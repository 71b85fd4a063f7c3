"""Every error silobridge raises, in one tree, so callers can catch by meaning.

    SilobridgeError
    ├── ConfigError            config or mapping files are invalid; carries every Problem found
    ├── TopologyConflict       a queue exists with arguments that differ from what the config wants
    ├── Refused                an inbound request is refused: HTTP status, metric reason, the fix
    │                          (REST answers it as JSON, SOAP as a fault; adapters subclass it:
    │                          AuthError, XmlRejected, SoapFault)
    ├── BrokerError            anything the broker did to a publish (all retryable)
    │   ├── BrokerUnavailable  no connection, channel closed, or the connection is blocked too long
    │   ├── PublishNacked      the broker refused the message (basic.nack)
    │   ├── PublishReturned    unroutable: no queue bound for the routing key (basic.return)
    │   └── PublishTimeout     no confirm arrived within the publish timeout
    └── ProcessingError        one message failed; .stage and .retryable decide its fate
        ├── DecodeError        the body is not a CloudEvent (permanent)
        │   └── FieldTooLong   a value that becomes an AMQP short string is over 255 bytes
        ├── SchemaError        a payload does not match its JSON Schema (permanent)
        ├── MappingError       a mapping rule failed (permanent unless a subclass says otherwise)
        │   └── XrefMissing    a cross-reference is not known yet; retryable when on_missing=retry
        ├── EnrichError        an enrich step's call failed or answered nothing usable; classified
        │                      like a delivery (a 503 retries, a 404 dead-letters), stage 'enrich'
        ├── DeliveryError      the target refused or failed; the adapter classifies it
        ├── SyncKeyError       a synced route's event lacks its subject or a usable version
        └── StoreUnavailable   a worker stopped while waiting for a failing store (requeued)

Foreign exceptions (pika, zeep, httpx, sqlite3, psycopg) are translated where they are caught,
with ``raise ... from exc``, so the pipeline only ever sees this tree. Each error carries data
(``details``) that ends up in dead-letter headers; messages never contain payload values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "BrokerError",
    "BrokerUnavailable",
    "ConfigError",
    "DecodeError",
    "DeliveryError",
    "EnrichError",
    "FieldTooLong",
    "MappingError",
    "Problem",
    "ProcessingError",
    "PublishNacked",
    "PublishReturned",
    "PublishTimeout",
    "Refused",
    "SchemaError",
    "SilobridgeError",
    "StoreUnavailable",
    "SyncKeyError",
    "TopologyConflict",
    "XrefMissing",
]


class SilobridgeError(Exception):
    """Root of every error silobridge raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file: where it is and how to fix it."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path or '<root>'}: {self.message}"


class ConfigError(SilobridgeError):
    """One or more problems in a config or mapping file; all of them, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class TopologyConflict(SilobridgeError):
    """A queue already exists with arguments that differ from the config.

    RabbitMQ refuses to redeclare it (PRECONDITION_FAILED); the operator must delete the queue or
    change the config, so we name both.
    """

    def __init__(self, queue: str, reply: str) -> None:
        self.queue = queue
        self.reply = reply
        fix = (f"run 'silobridge dlq migrate {queue.removeprefix('silobridge.route.')[:-4]}' "
               f"to make it the classic DLQ of this release, keeping its dead letters"
               if queue.endswith(".dlq") else
               "delete it (after draining) or align the config with it")
        super().__init__(f"queue {queue!r} already exists with different arguments ({reply}); "
                         f"{fix}")


class Refused(SilobridgeError):
    """An inbound request refused, with everything each protocol needs to answer it.

    One type for every inbound protocol, so the checks the ingress shares (size, media type,
    client certificate, dedupe, publish) refuse the same way whoever asked: REST renders it as
    JSON (``error``, ``detail`` and the ``extra`` fields), SOAP as a fault (Server when
    ``retryable``, else Client; ``extra`` as detail elements). ``status`` is the HTTP status,
    ``reason`` the bounded label of the rejected metric, ``detail`` says what is wrong, where,
    and how to fix it, and never quotes a secret or a payload value.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        error: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status, self.reason, self.error, self.detail = status, reason, error, detail
        self.headers: dict[str, str] = dict(headers or {})
        self.extra: dict[str, Any] = dict(extra or {})

    @property
    def retryable(self) -> bool:
        """The sender should send the same request again later (503, 429, 500)."""
        return self.status >= 500 or self.status == 429


class BrokerError(SilobridgeError):
    """A publish did not reach a durable state; always worth another try."""

    retryable = True


class BrokerUnavailable(BrokerError):
    """No usable connection or channel, or the broker blocked us longer than allowed."""


class PublishNacked(BrokerError):
    """The broker answered basic.nack (for example a full queue with overflow=reject-publish)."""


class PublishReturned(BrokerError):
    """The broker returned the message as unroutable: nothing is bound for the routing key."""

    def __init__(self, exchange: str, routing_key: str, reply_text: str) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        super().__init__(
            f"unroutable: exchange {exchange!r} has no binding for routing key "
            f"{routing_key!r} ({reply_text}); declare a route or a binding for it"
        )


class PublishTimeout(BrokerError):
    """No confirm within the timeout; the message may or may not be stored."""


class ProcessingError(SilobridgeError):
    """A message failed at one pipeline stage.

    ``stage`` names the stage (decode, validate, map, deliver), ``retryable`` decides between a
    retry tier and the dead-letter queue, ``retry_after`` (seconds) carries a peer's Retry-After
    hint into that decision, ``details`` are short strings copied into DLQ headers.
    """

    stage = "process"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        retryable: bool | None = None,
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable
        self.retry_after = retry_after
        self.details: dict[str, Any] = details or {}


class EnrichError(ProcessingError):
    """An enrich step could not fetch what the payload lacks; ``retryable`` and ``retry_after``
    come from the system's answer (classified as for a delivery), ``details`` name the system
    and the step, so a dead letter says which call failed and why."""

    stage = "enrich"


class StoreUnavailable(ProcessingError):
    """A store call could not finish (the store is down, full, read-only or slow) and the
    worker gave up waiting for it because it is stopping; the message goes back to its queue.

    While the worker runs, store faults never surface as errors: the call waits and retries
    (``middleware.storecalls``), since a store fault is transient by definition.
    """

    stage = "store"
    retryable = True


class SyncKeyError(ProcessingError):
    """A route with ``sync`` cannot tell an event's subject or version (permanent: the event
    itself lacks them); the message names the attribute or path, never a payload value."""

    stage = "sync"


class DecodeError(ProcessingError):
    """The message body is not a valid CloudEvent envelope."""

    stage = "decode"


class FieldTooLong(DecodeError):
    """A value that becomes an AMQP short string (message_id, correlation_id, type, routing
    key, a header name) is longer than the 255 bytes AMQP can carry.

    pika only notices while encoding the frame on the broker I/O thread, so every inbound
    adapter checks where it builds the envelope and refuses the request (400, a Client fault):
    no retry can help, only a shorter value. ``field`` names the envelope attribute or AMQP
    property, ``size`` its length in UTF-8 bytes.
    """

    limit = 255

    def __init__(self, field: str, size: int, *, carried_as: str) -> None:
        super().__init__(
            f"{field} is {size} bytes long (UTF-8) and travels as the AMQP {carried_as}, "
            f"which holds at most {self.limit} bytes; send a shorter {field} or derive it "
            f"from a shorter value (or a digest of it)",
            details={"field": field, "limit": str(self.limit)},
        )
        self.field = field
        self.size = size


class SchemaError(ProcessingError):
    """A payload failed JSON Schema validation; ``path`` is where, in JSON Pointer-ish dots."""

    stage = "validate"

    def __init__(self, message: str, *, path: str, schema: str = "") -> None:
        super().__init__(message, details={"path": path, "schema": schema})
        self.path = path
        self.schema = schema


class MappingError(ProcessingError):
    """A mapping rule failed at run time; names mapping, rule and source path, never values."""

    stage = "map"

    def __init__(
        self,
        message: str,
        *,
        mapping: str = "",
        rule: str = "",
        path: str = "",
        retryable: bool | None = None,
    ) -> None:
        super().__init__(
            message,
            retryable=retryable,
            details={"mapping": mapping, "rule": rule, "path": path},
        )
        self.mapping = mapping
        self.rule = rule
        self.path = path


class XrefMissing(MappingError):
    """A cross-reference lookup found nothing; retryable when the rule says on_missing=retry."""


class DeliveryError(ProcessingError):
    """The target did not accept the message. Adapters classify it via ``retryable``.

    ``retry_after`` (seconds) carries a target's Retry-After hint into the retry decision.
    """

    stage = "deliver"
