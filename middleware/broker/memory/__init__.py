"""An in-memory implementation of the broker contract (``middleware.broker.contract``).

For the unit tier: the pipeline, the ingress and the targets run against it in milliseconds,
with the semantics the contract suite checks on both this and RabbitMQ.
"""

from middleware.broker.memory.broker import MemoryBroker, MemoryPublisher
from middleware.broker.memory.consumer import MemoryConsumer, MemoryDelivery

__all__ = ["MemoryBroker", "MemoryConsumer", "MemoryDelivery", "MemoryPublisher"]
