"""Case 11: a three-node RabbitMQ cluster on this machine, nodes SIGKILLed under load.

Three fresh nodes of the test's own (tests/integration/extra_node.py), joined with
``join_cluster``; the machine's node is not involved. silobridge gets all three URLs. First the
node that leads the route queue is SIGKILLed mid-stream; once it is back, and every quorum
queue has all three members online again, the node silobridge's consumer is connected to is
SIGKILLed, mid-stream too (half the events are published after the first restart). (Killing
both at once would leave one of three quorum members: no quorum, and a quorum queue rightly
stops.) Every event is delivered, duplicates stay within the prefetch window per failover, and
each recovery takes under 30 s.

A failing run keeps its evidence (node logs, each node's view of the queues, the daemon's
counters) in a directory its failure message names (``cluster_evidence``).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest

from middleware.broker.factory import declare
from middleware.broker.properties import Properties
from middleware.broker.rabbitmq.publisher import Publisher
from middleware.broker.topology import QueueSpec, Topology, queue_name, topology_for
from middleware.config.loader import LoadedConfig
from middleware.config.models import BrokerConfig
from middleware.daemon import Daemon, Role
from middleware.errors import PublishNacked
from tests.faults.cluster_evidence import kept_on_failure
from tests.faults.conftest import size
from tests.faults.results import record
from tests.integration.extra_node import ExtraCluster, ExtraNode, require_node_tools
from tests.integration.helpers import counter, publish_events, queue_count, wait_until
from tests.integration.test_pipeline import amqp_route

RECOVERY = 30.0


pytestmark = pytest.mark.skipif(
    not os.environ.get("FAULTS_CLUSTER"),
    reason="set FAULTS_CLUSTER=1: starts three RabbitMQ nodes (~40 s each test)")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ExtraCluster]:
    require_node_tools()
    with ExtraCluster(tmp_path) as cluster:
        yield cluster


def _queues(node: ExtraNode) -> list[dict[str, Any]]:
    """The node's view of every queue: name, type, leader, members, members online."""
    rows: list[dict[str, Any]] = json.loads(node.ctl(
        "list_queues", "name", "type", "leader", "members", "online", "--silent",
        "--formatter", "json"))
    return rows


def _leader(cluster: ExtraCluster, queue: str) -> ExtraNode | None:
    """The node leading ``queue``; None while no running node lists it (3.10 lists a quorum
    queue with its recorded leader, and not while that leader's node is down)."""
    leaders = [row["leader"] for row in _queues(cluster.running()[0]) if row["name"] == queue]
    return cluster.node(leaders[0]) if leaders else None


def _offline_members(cluster: ExtraCluster, queues: list[str]) -> dict[str, list[str]]:
    """Those of ``queues`` with a member that is not running, and those members."""
    rows = {row["name"]: row for row in _queues(cluster.running()[0])}
    offline = {name: sorted(set(rows[name]["members"]) - set(rows[name]["online"]))
               if name in rows else ["none listed: the leader's node is down"]
               for name in queues}
    return {name: members for name, members in offline.items() if members}


def _consumer_node(cluster: ExtraCluster) -> ExtraNode:
    live = cluster.running()[0]
    rows = json.loads(live.ctl("list_connections", "port", "client_properties", "--silent",
                               "--formatter", "json"))
    for row in rows:
        names = [value for key, _type, value in row["client_properties"]
                 if key == "connection_name"]
        if names == ["silobridge-consume"]:
            return next(node for node in cluster.nodes if node.amqp_port == row["port"])
    raise AssertionError(f"no consumer connection in {rows}")


def _outcomes(route: str) -> dict[str, float]:
    return {o: counter("silobridge_messages_total", route=route, target="amqp", outcome=o)
            for o in ("delivered", "retried", "requeued", "duplicate", "dead_lettered")}


def _take_all(url: str, queue: str, timeout: float) -> list[str | None]:
    """The message ids of everything in ``queue``, taken by a consumer up to a sentinel.

    With a deadline: a drain by one ``basic_get`` after another, without one, waited until the
    test's 900 s timeout in a run before (docs/reliability.md). A consumer is faster too:
    2,700 messages in 0.1 s, where a ``basic_get`` took 1.3 ms (load 7.6).
    """
    sentinel = f"end-{uuid.uuid4().hex}"
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("", queue, b"", pika.BasicProperties(
            message_id=sentinel, delivery_mode=pika.DeliveryMode.Persistent), mandatory=True)
        channel.basic_qos(prefetch_count=1000)
        ids: list[str | None] = []
        deadline = time.monotonic() + timeout
        for method, props, _body in channel.consume(queue, inactivity_timeout=1):
            if method is not None:
                if props.message_id == sentinel:
                    channel.basic_ack(method.delivery_tag, multiple=True)
                    channel.cancel()
                    return ids
                ids.append(props.message_id)
                if len(ids) % 500 == 0:
                    channel.basic_ack(method.delivery_tag, multiple=True)
            assert time.monotonic() < deadline, \
                f"the sentinel did not come out of {queue} within {timeout:g} s " \
                f"({len(ids)} messages before it)"
        raise AssertionError(f"the broker cancelled the consumer of {queue} before the sentinel "
                             f"came ({len(ids)} messages before it)")
    finally:
        connection.close()


@pytest.mark.timeout(900)  # three nodes and two kills: 3-5 min at load 11-17 here
def test_cluster_node_kills_fail_over_without_loss(
    cluster: ExtraCluster, prefix: str, make_config: Callable[..., LoadedConfig],
) -> None:
    count = int(size("cluster_messages", 10000))
    first = count // 2
    route = f"{prefix}-r"
    route_queue = queue_name(route)
    target = f"{prefix}.out"
    loaded = make_config([amqp_route(prefix)], broker={
        "url": cluster.url, "prefetch": 200, "publish_timeout": 5, "heartbeat": 2,
        "reconnect_max_delay": 2, "connect_timeout": 3})
    # Given half the events waiting in the route queue before the daemon starts (the other
    # half follows once the first victim is back: restarting a node took longer than
    # delivering the rest of one backlog, and a run with all events published up front
    # recorded its second kill with "0 events still to deliver", a kill that tested nothing)
    declare(loaded.config.broker, topology_for(loaded.config))
    ids = publish_events(cluster.url, prefix, first)
    leader = _leader(cluster, route_queue)
    assert leader is not None, f"{route_queue} has no leader"
    daemon = Daemon(loaded, Role.WORKER)
    replicas: dict[str, int] = {}  # the test's quorum queues and their members
    recoveries: list[float] = []
    restarts: list[float] = []  # seconds each victim took to start again
    killed: list[str] = []
    remaining: list[int] = []  # events published, not yet at the target, at each kill

    def at_target() -> int:
        """Delivered by the daemon's own count: a quorum queue's message count read from
        the broker during a leader election can read 0."""
        return int(counter("silobridge_messages_total", route=route, target="amqp",
                           outcome="delivered"))

    def state() -> dict[str, Any]:
        return {"outcomes": _outcomes(route), "readiness": daemon.readiness(),
                "published": len(ids), "killed": killed, "remaining": remaining,
                "recoveries": recoveries, "restarts": restarts}

    def kill_mid_stream(victim: ExtraNode, after: int) -> None:
        assert wait_until(lambda: at_target() >= after, 60, step=0.02), \
            f"{at_target()} of {len(ids)} at the target"
        before = at_target()
        assert before < len(ids), \
            f"all {len(ids)} events published were delivered before {victim.name} could be " \
            "killed: that kill would test nothing"
        remaining.append(len(ids) - before)
        victim.kill()
        killed.append(victim.name)
        lost_at = time.monotonic()
        # Then silobridge carries on through the other nodes within the recovery time
        assert wait_until(lambda: at_target() >= min(before + 50, len(ids))
                          and all(daemon.readiness().values()), RECOVERY, step=0.1), \
            f"no progress within {RECOVERY:g} s after killing {victim.name}: {at_target()} " \
            f"at the target, readiness {daemon.readiness()}, outcomes {_outcomes(route)}"
        recoveries.append(time.monotonic() - lost_at)
        # And the victim is back, every quorum member on it running, before anything else:
        # two of three keep a quorum through the next kill only if the third is really there
        restarts.append(victim.start())
        assert wait_until(lambda: not _offline_members(cluster, list(replicas)), 60, step=1), \
            f"quorum members offline 60 s after {victim.name} started again: " \
            f"{_offline_members(cluster, list(replicas))}"

    daemon.start()
    try:
        with kept_on_failure(cluster, [route_queue, target], state):
            assert wait_until(lambda: all(daemon.readiness().values()), 30)
            replicas.update({row["name"]: len(row["members"]) for row in _queues(leader)
                             if "quorum" in str(row["type"])
                             and (row["name"] == target or row["name"].startswith(route_queue))})
            assert set(replicas.values()) == {3}, f"quorum queues not on all three: {replicas}"
            # When the route queue's leader is SIGKILLed while the first half is worked off
            kill_mid_stream(leader, first // 5)
            # And, once it is back, the consumer's node while the second half is worked off
            # (found before publishing: rabbitmqctl takes a second or two)
            victim = _consumer_node(cluster)
            ids += publish_events(cluster.url, prefix, count - first)
            kill_mid_stream(victim, first + (count - first) // 5)
            assert wait_until(lambda: at_target() >= count, 120)
            assert wait_until(
                lambda: queue_count(cluster.running()[0].url, route_queue) == 0, 60)
    finally:
        daemon.stop()
    with kept_on_failure(cluster, [target], state):
        received = Counter(_take_all(cluster.running()[0].url, target, 120))
    lost = set(ids) - set(received)
    extra = sum(n - 1 for n in received.values())
    assert not lost
    assert extra <= loaded.config.broker.prefetch * len(killed)
    record("cluster", observed=f"3 nodes, {count} events: the route queue's leader, then the "
           f"consumer's node SIGKILLed mid-stream with {' and '.join(map(str, remaining))} "
           f"events still to deliver (half published before the first kill, half after; "
           f"each victim started again, in {' and '.join(f'{s:.0f}' for s in restarts)} s, "
           f"with its quorum members online before going on); delivering again after "
           f"{' and '.join(f'{s:.1f}' for s in recoveries)} s",
           lost=len(lost), duplicates=extra,
           recovery_seconds=round(max(recoveries), 1))


@pytest.mark.timeout(600)
def test_publisher_renews_a_channel_nacked_for_a_dead_quorum_leader(
    cluster: ExtraCluster, prefix: str,
) -> None:
    """RabbitMQ 3.10 nacks every publish of a channel whose first publish to a quorum queue
    found the queue's leader recorded on a dead node, for as long as that node is down, even
    after a new leader took over (see ``Publisher._renew_soon``). silobridge's publisher
    renews its channel after a nack, and is confirmed again once the new leader is recorded.
    """
    queue = f"{prefix}.q"
    declare(BrokerConfig(url=cluster.nodes[0].url),
            Topology([], [QueueSpec(queue, {"x-queue-type": "quorum"})]))
    leader = _leader(cluster, queue)
    assert leader is not None, f"{queue} has no leader"
    publishing, other = (node for node in cluster.nodes if node is not leader)
    publisher = Publisher(BrokerConfig(url=publishing.url, publish_timeout=5))
    assert publisher.start(wait=10)
    params = pika.URLParameters(publishing.url)
    params.heartbeat = 0  # this connection idles while a node starts
    plain = pika.BlockingConnection(params)
    try:
        kept = plain.channel()  # a plain channel, kept as it is, to show what RabbitMQ does
        kept.confirm_delivery()
        # Given the leader's node and one more SIGKILLed: no quorum, so no new leader is
        # elected, and the queue's record still names the dead one
        leader.kill()
        other.kill()
        # When a channel publishes to the queue for the first time: it asks the dead leader
        # Then it is nacked
        with pytest.raises(PublishNacked):
            publisher.publish("", queue, b"{}", Properties(message_id="m-0")).result(30)
        with pytest.raises(pika.exceptions.NackError):
            kept.basic_publish("", queue, b"{}", mandatory=True)
        # When the other node is back: two of three elect a leader, and it is recorded
        other.start()
        assert wait_until(lambda: _leader(cluster, queue) not in (None, leader), 60, step=1), \
            "no new leader recorded within 60 s of the quorum coming back"
        # Then the channel kept from before is still nacked (RabbitMQ 3.10), while the old
        # leader is down...
        with pytest.raises(pika.exceptions.NackError):
            kept.basic_publish("", queue, b"{}", mandatory=True)

        # ...and silobridge's publisher, whose channel was renewed, is confirmed
        def confirmed() -> bool:
            future = publisher.publish("", queue, b"{}", Properties(message_id="m-1"))
            return future.exception(10) is None

        assert wait_until(confirmed, 15, step=0.5), \
            f"publishes still refused 15 s after the new leader was recorded " \
            f"(channel renewed {publisher.renewals} times)"
        assert publisher.renewals >= 1
    finally:
        if plain.is_open:
            plain.close()
        publisher.stop()
