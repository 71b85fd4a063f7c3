"""AMQP adapter: deliver mapped payloads to an exchange (outbound only)."""

from adapters.amqp.config import AmqpTargetConfig
from adapters.amqp.outbound import AmqpTarget
from middleware.adapter import AdapterConfig
from middleware.plugins import AdapterSpec, register

__all__ = ["AmqpTarget", "AmqpTargetConfig"]


def _target(config: AdapterConfig) -> AmqpTarget:
    assert isinstance(config, AmqpTargetConfig)
    return AmqpTarget(config)


register(AdapterSpec("amqp", outbound_config=AmqpTargetConfig, outbound=_target))
