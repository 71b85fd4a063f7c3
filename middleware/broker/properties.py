"""Message properties as a plain dataclass of our own, so no broker client's types leak.

Everything above the broker seam (pipeline, adapters, DLQ tools) reads and writes these; the
RabbitMQ implementation translates them to and from pika's ``BasicProperties`` at its edge
(``middleware.broker.rabbitmq.convert``), and the in-memory broker stores them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["PERSISTENT", "Properties", "with_headers"]

PERSISTENT = 2  # AMQP delivery mode of a message written to disk


@dataclass
class Properties:
    """The AMQP basic properties silobridge uses; ``headers`` is the AMQP header table."""

    message_id: str | None = None
    correlation_id: str | None = None
    type: str | None = None
    content_type: str | None = None
    content_encoding: str | None = None
    timestamp: int | None = None  # seconds since the epoch, as AMQP carries it
    delivery_mode: int | None = None
    priority: int | None = None
    expiration: str | None = None
    reply_to: str | None = None
    app_id: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)


class _Identified(Protocol):
    @property
    def message_id(self) -> str | None: ...
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def type(self) -> str | None: ...
    @property
    def content_type(self) -> str | None: ...
    @property
    def timestamp(self) -> int | None: ...


def with_headers(
    properties: _Identified, headers: dict[str, Any], message_id: str | None = None
) -> Properties:
    """The properties of a message republished as it was (retry tier, DLQ, replay), with new
    headers: ids, type and timestamps stay, so the copy is the same message to every tool."""
    return Properties(
        message_id=properties.message_id or message_id, correlation_id=properties.correlation_id,
        type=properties.type, content_type=properties.content_type,
        timestamp=properties.timestamp, delivery_mode=PERSISTENT, headers=headers,
    )
