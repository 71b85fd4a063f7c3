"""The broker seam: what the rest of silobridge may know about the message broker.

- ``contract``: Protocols (``Broker``, ``Publisher``, ``Consumer``, ``Delivery``) and
  ``properties.Properties``, a plain dataclass for AMQP message properties; errors are those
  of ``middleware.errors``.
- ``topology``: every exchange, queue and argument name, derived in one pure place.
- ``factory.connect``: the RabbitMQ broker; the only importer of ``rabbitmq`` (pika).
- ``memory.MemoryBroker``: the same contract in memory, for the unit tier.
- ``ingest``, ``shortstr``, ``guard``, ``dlq``: helpers above the contract.

Import contracts in pyproject.toml (``make lint``) keep it so; docs/architecture.md has the map.
This package imports nothing itself: the config models import ``topology``, and an import here
would pull the contract in before the config package has finished loading.
"""
