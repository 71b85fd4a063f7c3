"""Several broker node URLs and the connect timeout, as connection parameters see them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from middleware.broker.rabbitmq.connection import connection_parameters, node_parameters
from middleware.config.models import BrokerConfig

NODES = "amqp://u:p@node1:5672/%2F, amqp://u:p@node2:5673/%2F,amqp://u:p@node3:5674/%2F"


def test_broker_urls_split_a_comma_separated_list_in_order() -> None:
    assert [url.split("@")[1] for url in BrokerConfig(url=NODES).urls] == [
        "node1:5672/%2F", "node2:5673/%2F", "node3:5674/%2F"]


def test_connection_parameters_walk_round_the_nodes() -> None:
    broker = BrokerConfig(url=NODES)
    hosts = [connection_parameters(broker, "t", node).host for node in range(4)]
    assert hosts == ["node1", "node2", "node3", "node1"]
    assert [p.port for p in node_parameters(broker, "t")] == [5672, 5673, 5674]


def test_broker_url_list_names_the_bad_entry() -> None:
    with pytest.raises(ValidationError, match="URL 2 of the list must start with amqp://"):
        BrokerConfig(url="amqp://a/,http://b/")


def test_connect_timeout_bounds_the_whole_handshake() -> None:
    params = connection_parameters(BrokerConfig(connect_timeout=2.5), "t")
    assert params.socket_timeout == 2.5
    assert params.stack_timeout == 2.5


class _RecordingLoop:
    """Stands in for BrokerLoop: records the delays that reconnects are scheduled with."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def call_later(self, delay: float, _fn: object) -> None:
        self.delays.append(delay)


def test_reconnect_delays_are_jittered_within_the_backoff_and_move_to_the_next_node() -> None:
    from middleware.broker.rabbitmq.connection import ManagedConnection

    loop = _RecordingLoop()
    broker = BrokerConfig(url=NODES, reconnect_max_delay=4)
    connections = [ManagedConnection(loop, f"jitter-{n}", broker,  # type: ignore[arg-type]
                                     lambda _c: None, lambda: None) for n in range(50)]
    for connection in connections:
        connection._retry_later()
    first = list(loop.delays)
    # replicas that lost the broker together come back spread over half the backoff
    assert all(0.25 <= d <= 0.5 for d in first)
    assert max(first) - min(first) > 0.1
    assert all(c._node == 1 for c in connections)  # the next attempt goes to node2
    loop.delays.clear()
    for _ in range(5):
        connections[0]._retry_later()
    assert all(d <= 4 for d in loop.delays) and loop.delays[-1] >= 2  # capped, still jittered
