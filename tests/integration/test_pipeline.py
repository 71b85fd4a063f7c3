"""The worker pipeline against the real RabbitMQ: delivery, retries, dead letters, replay."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import orjson
import pika
import pytest

from middleware import headers as h
from middleware.broker import dlq
from middleware.broker.topology import dlq_name, queue_name
from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon
from tests.integration.helpers import (
    ScriptedTarget,
    counter,
    publish_events,
    publish_sentinel,
    queue_count,
    take_until,
    wait_until,
    waiting,
)

pytestmark = pytest.mark.integration


def amqp_route(prefix: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": f"{prefix}-r",
        "bind": [f"{prefix}.customer.*"],
        "target": {"type": "amqp", "exchange": f"{prefix}.out", "routing_key": "erp.account",
                   "queue": f"{prefix}.out"},
        **extra,
    }


def scripted_route(prefix: str, target: str = "") -> dict[str, Any]:
    return {"name": f"{prefix}-r", "bind": [f"{prefix}.customer.*"],
            "target": {"type": "scripted", "name": target or prefix}}


def test_pipeline_delivers_each_of_1000_envelopes_once(
    amqp_url: str, prefix: str, make_config: Callable[..., LoadedConfig],
    run_daemon: Callable[[LoadedConfig], Daemon],
) -> None:
    # Given a route delivering to an AMQP target exchange with a bound queue
    loaded = make_config([amqp_route(prefix)])
    route = f"{prefix}-r"
    before = counter("silobridge_messages_total", route=route, target="amqp",
                     outcome="delivered")
    run_daemon(loaded)
    # When 1,000 envelopes are published on the events exchange
    ids = publish_events(amqp_url, prefix, 1000)
    # Then the target queue receives each envelope id exactly once, and the metrics agree
    assert wait_until(lambda: queue_count(amqp_url, f"{prefix}.out") >= 1000, 60)
    # (a sentinel published behind them comes out after any late copy of theirs)
    sentinel = publish_sentinel(amqp_url, prefix)
    out = take_until(amqp_url, f"{prefix}.out", lambda props, _: props.message_id == sentinel)
    assert queue_count(amqp_url, f"{prefix}.out") == 0
    assert waiting(amqp_url, route, 3) == {}
    received = [props.message_id for props, _ in out]
    assert sorted(received) == sorted(ids)
    event = orjson.loads(out[0][1])
    assert event["type"] == "erp.account" and event["causationid"] == event["id"]
    assert event["hops"] == 1
    def delivered() -> float:
        return counter("silobridge_messages_total", route=route, target="amqp",
                       outcome="delivered") - before

    assert wait_until(lambda: delivered() >= 1001, 10)  # the sentinel's count lands last
    assert delivered() == 1000 + 1
    assert queue_count(amqp_url, queue_name(route)) == 0


def test_pipeline_retries_transient_failures_with_backoff_then_delivers_once(
    amqp_url: str, prefix: str, make_config: Callable[..., LoadedConfig],
    run_daemon: Callable[[LoadedConfig], Daemon],
) -> None:
    loaded = make_config([scripted_route(prefix)])
    run_daemon(loaded)
    target = ScriptedTarget.instances[prefix]
    target.fail_all = 3
    [event_id] = publish_events(amqp_url, prefix, 1)
    assert wait_until(lambda: target.accepted == [event_id], 20)
    times = [t for i, t in target.calls if i == event_id]
    assert len(times) == 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # tiers are 0.3s, 0.6s, 1.2s; the broker expires TTL messages at the head promptly
    for gap, delay in zip(gaps, [0.3, 0.6, 1.2], strict=True):
        assert gap >= delay * 0.9, gaps
    # a sentinel failing as often goes through the same retry tiers behind any late copy
    sentinel = publish_sentinel(amqp_url, prefix)
    assert wait_until(lambda: sentinel in target.accepted, 20)
    assert target.accepted == [event_id, sentinel]
    assert [i for i, _ in target.calls].count(event_id) == 4
    assert waiting(amqp_url, f"{prefix}-r", 3) == {}
    assert queue_count(amqp_url, dlq_name(f"{prefix}-r")) == 0


def test_pipeline_dead_letters_permanent_failure_and_replay_delivers_once(
    amqp_url: str, prefix: str, make_config: Callable[..., LoadedConfig],
    run_daemon: Callable[[LoadedConfig], Daemon],
) -> None:
    loaded = make_config([scripted_route(prefix)])
    route = f"{prefix}-r"
    run_daemon(loaded)
    target = ScriptedTarget.instances[prefix]
    target.retryable = False
    target.fail_all = 1
    [event_id] = publish_events(amqp_url, prefix, 1)
    assert wait_until(lambda: queue_count(amqp_url, dlq_name(route)) == 1, 15)
    # one call only: a permanent failure is not retried
    assert [i for i, _ in target.calls] == [event_id]
    [letter] = dlq.browse(loaded.config.broker, dlq_name(route))
    assert letter.message_id == event_id
    assert letter.headers[h.STAGE] == "deliver"
    assert letter.headers[h.ERROR] == "DeliveryError"
    assert letter.headers[h.ROUTE] == route
    assert letter.headers[h.TARGET] == "scripted"
    assert letter.headers[h.ATTEMPTS] == 0
    assert letter.headers["x-sb-detail-status"] == "400"
    assert letter.reason.startswith("permanent: scripted failure")
    assert letter.headers[h.FIRST_FAILURE] and letter.headers[h.LAST_FAILURE]
    # When the cause is fixed and the dead letter replayed
    assert target.fail_all == 1 and target.failures[event_id] == 0
    assert dlq.replay(loaded.config.broker, route, {event_id}).ids == [event_id]
    assert wait_until(lambda: target.accepted == [event_id], 10)
    assert queue_count(amqp_url, dlq_name(route)) == 0
    # a sentinel behind the replay comes out after any second copy of it
    target.fail_all = 0
    sentinel = publish_sentinel(amqp_url, prefix)
    assert wait_until(lambda: sentinel in target.accepted, 10)
    assert target.accepted == [event_id, sentinel]
    assert waiting(amqp_url, route, 3) == {}


def test_pipeline_exhausted_retries_end_in_dlq_with_attempt_count(
    amqp_url: str, prefix: str, make_config: Callable[..., LoadedConfig],
    run_daemon: Callable[[LoadedConfig], Daemon],
) -> None:
    loaded = make_config([scripted_route(prefix)])
    route = f"{prefix}-r"
    run_daemon(loaded)
    ScriptedTarget.instances[prefix].fail_all = 100
    [event_id] = publish_events(amqp_url, prefix, 1)
    assert wait_until(lambda: queue_count(amqp_url, dlq_name(route)) == 1, 20)
    [letter] = dlq.browse(loaded.config.broker, dlq_name(route))
    assert letter.message_id == event_id
    assert letter.attempts == 3
    assert letter.reason.startswith("retries_exhausted")
    assert len(ScriptedTarget.instances[prefix].calls) == 4


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\x00not json", "body is not JSON"),
        (b'{"hello": "world"}', "not a CloudEvent: missing attribute(s) id, source, type"),
        (b'{"id": "1", "source": "s", "type": "other.thing.happened", "specversion": "1.0"}',
         "does not match the route's bindings"),
    ],
)
def test_pipeline_sends_malformed_messages_straight_to_dlq(
    amqp_url: str, prefix: str, make_config: Callable[..., LoadedConfig],
    run_daemon: Callable[[LoadedConfig], Daemon], body: bytes, reason: str,
) -> None:
    loaded = make_config([scripted_route(prefix)])
    route = f"{prefix}-r"
    run_daemon(loaded)
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish("", queue_name(route), body,
                          pika.BasicProperties(message_id="bad-1", delivery_mode=2))
    good = publish_events(amqp_url, prefix, 1)
    connection.close()
    assert wait_until(lambda: queue_count(amqp_url, dlq_name(route)) == 1, 10)
    [letter] = dlq.browse(loaded.config.broker, dlq_name(route))
    assert letter.headers[h.STAGE] == "decode"
    assert reason in letter.reason
    assert letter.attempts == 0
    # the poison message did not block the good one behind it, and was tried only once
    assert wait_until(lambda: ScriptedTarget.instances[prefix].accepted == good, 5)
    assert ScriptedTarget.instances[prefix].calls[0][0] == good[0]


def test_pipeline_competing_workers_share_a_route_without_double_delivery(
    amqp_url: str, prefix: str, make_config: Callable[..., LoadedConfig],
    run_daemon: Callable[[LoadedConfig], Daemon],
) -> None:
    # Given two workers on the same route, each with its own target and store (as replicas on
    # different hosts would have)
    run_daemon(make_config([scripted_route(prefix, f"{prefix}-a")]))
    second_config = make_config([scripted_route(prefix, f"{prefix}-b")])
    second_config.config.store.path = second_config.config.store.path + ".replica"
    run_daemon(second_config)
    first, second = (ScriptedTarget.instances[f"{prefix}-{x}"] for x in "ab")
    ids = publish_events(amqp_url, prefix, 2000)
    assert wait_until(lambda: len(first.accepted) + len(second.accepted) >= 2000, 60)
    # (sentinels published behind them until each worker took one: each worker has handled
    # anything it was given before its sentinel, and the queue anything ahead of them)
    sentinels: list[str] = []
    while not (set(sentinels) & set(first.accepted) and set(sentinels) & set(second.accepted)):
        assert len(sentinels) < 50, "fifty sentinels and one worker took none of them"
        sentinels.append(publish_sentinel(amqp_url, prefix))
        assert wait_until(lambda: sentinels[-1] in first.accepted + second.accepted, 10)
    shares = [[i for i in target.accepted if i not in sentinels] for target in (first, second)]
    # Then each envelope went to exactly one of them, and both took a share
    assert sorted(shares[0] + shares[1]) == sorted(ids)
    assert shares[0] and shares[1]
    assert waiting(amqp_url, f"{prefix}-r", 3) == {}


def test_ops_endpoints_report_health_readiness_and_metrics(
    make_config: Callable[..., LoadedConfig], prefix: str,
    run_daemon: Callable[[LoadedConfig], Daemon],
) -> None:
    import httpx

    daemon = run_daemon(make_config([amqp_route(prefix)]))
    base = f"http://127.0.0.1:{daemon.ops.port}"
    assert httpx.get(f"{base}/healthz").json() == {"status": "alive"}
    ready = httpx.get(f"{base}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"started": True, "threads": True, "broker_publish": True,
                                      "store": True,
                                      "consumers": True, "mappings_loaded": True}
    metrics = httpx.get(f"{base}/metrics").text
    assert f'silobridge_consumers{{route="{prefix}-r"}} 1.0' in metrics
    assert "silobridge_build_info{" in metrics
