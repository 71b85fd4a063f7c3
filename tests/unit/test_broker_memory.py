"""The broker contract suite on the in-memory broker (the same suite runs on RabbitMQ in
``tests/integration/test_broker_contract.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from middleware.broker.memory import MemoryBroker
from tests.broker_contract import BrokerContract, Harness


class TestMemoryBroker(BrokerContract):
    @pytest.fixture
    def harness(self, prefix: str) -> Iterator[Harness]:
        broker = MemoryBroker()
        yield Harness(broker, prefix)
        broker.close()
