"""Config of the AMQP outbound adapter: publish mapped payloads to an exchange."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from middleware.adapter import AdapterConfig

__all__ = ["AmqpTargetConfig"]


class AmqpTargetConfig(AdapterConfig):
    model_config = ConfigDict(extra="forbid")

    type: Literal["amqp"] = Field("amqp", description="Selects this adapter.")
    exchange: str = Field(
        description="Exchange to publish to; declared (durable) at start.",
        examples=["silobridge.quickstart.out"],
    )
    exchange_type: Literal["topic", "direct", "fanout", "headers"] = Field(
        "topic", description="Type used when declaring the exchange."
    )
    routing_key: str = Field(
        description="Routing key; '{type}' and '{subject}' are replaced from the envelope.",
        examples=["erp.account.upsert"],
    )
    queue: str | None = Field(
        None,
        description="Optionally declare this durable queue bound with the routing key, so "
        "results are kept even before a consumer exists (handy for demos and tests).",
    )
    envelope: bool = Field(
        True,
        description="Publish a CloudEvent wrapping the mapped payload (true) or the bare payload.",
    )
