"""The worker's decisions on the in-memory broker: deliver, retry by tier, dead-letter,
duplicate, filter; each ends with the message settled exactly once and the queue empty."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import orjson
from prometheus_client import REGISTRY

from middleware import headers as h
from middleware.broker.properties import Properties
from middleware.broker.topology import dlq_name, queue_name
from tests.unit.pipeline_helpers import Scripted, event, running_route, take, wait_until


def test_pipeline_delivers_acks_and_records_the_envelope(tmp_path: Path, prefix: str) -> None:
    target = Scripted()
    with running_route(tmp_path, prefix, target) as route:
        envelope = event(prefix, n=7)
        route.send(envelope)
        assert wait_until(lambda: route.stores.idempotency.seen(prefix, envelope.id))
        assert target.calls == [(envelope.id, {"customer_no": "C-7"})]
        assert route.broker.depth(queue_name(prefix)) == 0
        assert route.worker.wait_idle(1)


def test_pipeline_event_time_without_offset_is_delivered_once_and_lag_read_as_utc(
    tmp_path: Path, prefix: str
) -> None:
    # Given an event whose time has no offset (CloudEvents wants one; senders omit it)
    target = Scripted()
    with running_route(tmp_path, prefix, target) as route:
        envelope = event(prefix).model_copy(update={"time": datetime(2024, 1, 1, 12, 0)})
        route.send(envelope)
        # Then it is delivered and acked once (the lag's subtraction raised, and the delivered
        # message went back to its queue and to the target again), its lag counted as UTC
        assert wait_until(lambda: route.stores.idempotency.seen(prefix, envelope.id))
        assert route.worker.wait_idle(1)
        assert target.calls == [(envelope.id, {"customer_no": "C-1"})]
        lag = REGISTRY.get_sample_value("silobridge_sync_lag_seconds_sum", {"route": prefix})
        assert lag is not None and lag > (datetime(2025, 1, 1) - datetime(2024, 1, 1, 12)
                                          ).total_seconds()


def test_pipeline_retries_transient_failures_through_the_tiers_then_delivers(
    tmp_path: Path, prefix: str
) -> None:
    target = Scripted(fail=2)
    with running_route(tmp_path, prefix, target) as route:
        envelope = event(prefix)
        route.send(envelope)
        assert wait_until(lambda: len(target.calls) == 3)
        assert wait_until(lambda: route.stores.idempotency.seen(prefix, envelope.id))
        assert route.broker.depth(dlq_name(prefix)) == 0


def test_pipeline_dead_letters_exhausted_retries_with_failure_headers(
    tmp_path: Path, prefix: str
) -> None:
    target = Scripted(fail=99)
    with running_route(tmp_path, prefix, target) as route:
        envelope = event(prefix)
        route.send(envelope)
        (letter,) = take(route.broker, dlq_name(prefix), 1)
        assert len(target.calls) == 3  # the first try and two retries
        assert letter.properties.message_id == envelope.id
        assert letter.headers[h.ROUTE] == prefix
        assert letter.headers[h.ATTEMPTS] == 2
        assert letter.headers[h.REASON].startswith("retries_exhausted: ")
        assert orjson.loads(letter.body)["id"] == envelope.id
        assert not route.stores.idempotency.seen(prefix, envelope.id)


def test_pipeline_dead_letters_permanent_failures_at_once(tmp_path: Path, prefix: str) -> None:
    target = Scripted(fail=1, retryable=False)
    with running_route(tmp_path, prefix, target) as route:
        route.send(event(prefix))
        (letter,) = take(route.broker, dlq_name(prefix), 1)
        assert len(target.calls) == 1
        assert letter.headers[h.STAGE] == "deliver"


def test_pipeline_dead_letters_a_body_that_is_no_envelope(tmp_path: Path, prefix: str) -> None:
    target = Scripted()
    with running_route(tmp_path, prefix, target) as route:
        route.publisher.publish("", queue_name(prefix), b"{not json",
                                Properties(message_id="junk")).result(5)
        (letter,) = take(route.broker, dlq_name(prefix), 1)
        assert letter.body == b"{not json" and letter.headers[h.STAGE] == "decode"
        assert target.calls == []


def test_pipeline_acks_a_redelivered_duplicate_without_delivering(
    tmp_path: Path, prefix: str
) -> None:
    target = Scripted()
    with running_route(tmp_path, prefix, target) as route:
        envelope = event(prefix)
        route.stores.idempotency.record_many([(prefix, envelope.id)])
        # a replayed copy: the worker must look it up in the store, and skip it
        route.publisher.publish("", queue_name(prefix), envelope.to_json(), Properties(
            message_id=envelope.id, headers={h.REPLAYS: 1})).result(5)
        assert wait_until(lambda: route.broker.depth(queue_name(prefix)) == 0)
        assert route.worker.wait_idle(1)
        assert target.calls == []


def test_pipeline_filter_skips_events_it_rejects(tmp_path: Path, prefix: str) -> None:
    target = Scripted()
    with running_route(tmp_path, prefix, target, filter="event.data.tier == 'gold'") as route:
        gold, plain = event(prefix, 1, tier="gold"), event(prefix, 2, tier="plain")
        route.send(plain, gold)
        assert wait_until(lambda: len(target.calls) == 1)
        assert route.worker.wait_idle(1)
        assert [call[0] for call in target.calls] == [gold.id]
        assert route.broker.depth(queue_name(prefix)) == 0
        assert route.broker.depth(dlq_name(prefix)) == 0
