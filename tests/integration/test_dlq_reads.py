"""Dead letters that do not change when read (issue 15 item 7), on the real broker.

A dead letter read fifty times keeps its headers (no ``x-delivery-count``: 4.x would drop a
quorum-queue message read twenty times); replay keeps the first-failure time; the DLQ's age is
the oldest failure, not the head's; ``dlq list --wide`` shows the whole reason; and ``dlq
migrate`` turns a quorum DLQ of an earlier release into the classic one, keeping its letters.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pika
import pytest

from middleware import headers as h
from middleware.broker import dlq
from middleware.broker.factory import blocking_channel, declare
from middleware.broker.topology import dlq_name, queue_name, topology_for
from middleware.config.loader import LoadedConfig
from middleware.config.models import BrokerConfig
from middleware.errors import TopologyConflict
from tests.integration.helpers import drain, queue_count

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
Channel = pika.adapters.blocking_connection.BlockingChannel


@pytest.fixture
def route(make_config: Callable[..., LoadedConfig], prefix: str,
          amqp_url: str) -> Iterator[LoadedConfig]:
    """A route whose topology is declared; its queues are deleted afterwards."""
    loaded = make_config([{"name": f"{prefix}-r", "bind": [f"{prefix}.r.*"],
                           "target": {"type": "amqp", "exchange": f"{prefix}.out",
                                      "routing_key": "x"}}])
    declare(loaded.config.broker, topology_for(loaded.config))
    yield loaded
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    connection.channel().queue_delete(f"{dlq_name(f'{prefix}-r')}.migrating")
    connection.close()


def _dead_letter(amqp_url: str, queue: str, message_id: str, first: datetime,
                 reason: str = "ERP said no") -> dict[str, Any]:
    headers = {h.ATTEMPTS: 3, h.REASON: reason, h.FIRST_FAILURE: first.isoformat(),
               h.LAST_FAILURE: (first + timedelta(seconds=5)).isoformat(), h.STAGE: "deliver"}
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish("", queue, b'{"subject": "C-1"}', pika.BasicProperties(
        message_id=message_id, type="crm.customer.updated", delivery_mode=2, headers=headers),
        mandatory=True)
    connection.close()
    return headers


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "middleware", *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, env=dict(os.environ))


def test_dlq_a_dead_letter_read_50_times_keeps_its_delivery_count(
    route: LoadedConfig, prefix: str, amqp_url: str,
) -> None:
    # Given one dead letter
    queue = dlq_name(f"{prefix}-r")
    sent = _dead_letter(amqp_url, queue, f"{prefix}-1", datetime.now(UTC))
    # When operators list and show it fifty times
    for _ in range(50):
        (letter,) = dlq.browse(route.config.broker, queue)
    # Then it is still there, with exactly the headers it was dead-lettered with
    (letter,) = dlq.browse(route.config.broker, queue)
    assert letter.message_id == f"{prefix}-1"
    assert letter.headers == sent
    assert "x-delivery-count" not in letter.headers
    assert queue_count(amqp_url, queue) == 1


def test_dlq_replay_keeps_the_first_failure_time(
    route: LoadedConfig, prefix: str, amqp_url: str,
) -> None:
    first = datetime.now(UTC) - timedelta(days=3)
    _dead_letter(amqp_url, dlq_name(f"{prefix}-r"), f"{prefix}-1", first)
    assert dlq.replay(route.config.broker, f"{prefix}-r", None).ids == [f"{prefix}-1"]
    ((props, _body),) = drain(amqp_url, queue_name(f"{prefix}-r"))
    assert props.headers[h.FIRST_FAILURE] == first.isoformat()
    assert props.headers[h.REPLAYS] == 1
    assert h.ATTEMPTS not in props.headers and h.LAST_FAILURE not in props.headers


def test_dlq_age_is_the_oldest_failure_not_the_head(
    route: LoadedConfig, prefix: str, amqp_url: str,
) -> None:
    # Given a young dead letter at the head and, behind it, a replayed one failing for a day
    queue = dlq_name(f"{prefix}-r")
    now = datetime.now(UTC)
    _dead_letter(amqp_url, queue, f"{prefix}-young", now - timedelta(seconds=30))
    _dead_letter(amqp_url, queue, f"{prefix}-old", now - timedelta(days=1))
    config = route.config
    with blocking_channel(config.broker, "test") as channel:
        counts = dlq.route_counts(channel, config, config.routes[0])
        # the letters went back at once: a replay on the same connection finds both
        assert len(dlq.browse(config.broker, queue)) == 2
    assert counts.dlq == 2
    assert counts.dlq_age is not None and counts.dlq_age == pytest.approx(86400, abs=60)


def test_dlq_list_wide_shows_the_whole_reason(
    route: LoadedConfig, prefix: str, amqp_url: str,
) -> None:
    reason = "Customer_Create failed: " + "the VAT number is not valid for the country; " * 6
    first = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    _dead_letter(amqp_url, dlq_name(f"{prefix}-r"), f"{prefix}-1", first, reason)
    config = str(route.path)
    narrow = _cli("dlq", "list", f"{prefix}-r", "-c", config)
    wide = _cli("dlq", "list", f"{prefix}-r", "--wide", "-c", config)
    assert narrow.returncode == 0 and wide.returncode == 0, wide.stderr
    assert reason not in narrow.stdout and reason[:80] in narrow.stdout
    assert reason in wide.stdout
    assert first.isoformat() in wide.stdout


def test_dlq_migrate_turns_a_quorum_dlq_into_a_classic_one_keeping_its_letters(
    make_config: Callable[..., LoadedConfig], prefix: str, amqp_url: str,
    amqp_channel: Channel,
) -> None:
    # Given a route whose DLQ an earlier release declared as a quorum queue, read twice
    loaded = make_config([{"name": f"{prefix}-r", "bind": [f"{prefix}.r.*"],
                           "target": {"type": "amqp", "exchange": f"{prefix}.out",
                                      "routing_key": "x"}}])
    queue = dlq_name(f"{prefix}-r")
    amqp_channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    sent = _dead_letter(amqp_url, queue, f"{prefix}-1", datetime.now(UTC))
    for _ in range(2):
        dlq.browse(loaded.config.broker, queue)
    # Then this release's topology refuses it and names the fix
    with pytest.raises(TopologyConflict, match=f"silobridge dlq migrate {prefix}-r"):
        declare(loaded.config.broker, topology_for(loaded.config))
    # When it is migrated
    done = _cli("dlq", "migrate", "-c", str(loaded.path))
    assert done.returncode == 0, done.stderr
    assert f"{queue}: now a classic queue; 1 dead letter(s) kept" in done.stdout
    # Then the topology declares, and the letter is there without the counted reads
    declare(loaded.config.broker, topology_for(loaded.config))
    (letter,) = dlq.browse(loaded.config.broker, queue)
    assert letter.message_id == f"{prefix}-1" and letter.headers == sent
    assert dlq.migrate(loaded.config.broker, f"{prefix}-r") is None
    probe = amqp_channel.connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):  # the side queue is gone
        probe.queue_declare(f"{queue}.migrating", passive=True)


def test_dlq_replay_takes_each_letter_once_even_when_it_fails_again_during_the_scan(
    prefix: str, amqp_url: str
) -> None:
    # Given a route queue that dead-letters everything straight back to its DLQ (as a target
    # refusing each replayed letter at once would), and three dead letters
    route = f"{prefix}-bounce"
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    try:
        channel.queue_declare(dlq_name(route), durable=True)
        channel.queue_declare(queue_name(route), durable=True, arguments={
            "x-message-ttl": 0, "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dlq_name(route)})
        first = datetime.now(UTC)
        for n in range(3):
            _dead_letter(amqp_url, dlq_name(route), f"{prefix}-{n}", first)
        # When every dead letter is replayed
        replayed = dlq.replay(BrokerConfig(url=amqp_url), route, None).ids
        # Then each was replayed once, though each came back to the DLQ during the scan
        assert sorted(replayed) == [f"{prefix}-{n}" for n in range(3)]
        assert queue_count(amqp_url, dlq_name(route)) == 3
    finally:
        channel.queue_delete(queue_name(route))
        channel.queue_delete(dlq_name(route))
        connection.close()
