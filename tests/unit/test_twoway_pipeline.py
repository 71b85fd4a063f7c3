"""Two-way sync in the worker, on the in-memory broker and a SQLite store: stale events,
per-subject order across a retry tier, and echo suppression between two paired routes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from middleware.adapter import Delivered
from middleware.broker.memory import MemoryBroker
from middleware.broker.memory.broker import MemoryPublisher
from middleware.broker.properties import Properties
from middleware.broker.topology import dlq_name, hold_name, queue_name, retry_name, topology_for
from middleware.config.models import Config, StoreConfig
from middleware.enrich import Enrichment
from middleware.envelope import Envelope
from middleware.errors import DeliveryError
from middleware.pipeline import RouteWorker
from middleware.storecalls import all_done
from middleware.stores import Stores, open_stores
from tests.unit.pipeline_helpers import wait_until

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@dataclass
class Recorder:
    """A target that records what it accepted, per subject, and fails chosen ids once."""

    fail_once: set[str] = field(default_factory=set)
    accepted: list[tuple[str, Any]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, context: Any) -> None:
        """Nothing to open."""

    def deliver(self, envelope: Envelope, payload: Any) -> Future[Delivered]:
        future: Future[Delivered] = Future()
        with self.lock:
            self.calls.append(envelope.id)
            failing = envelope.id in self.fail_once
            self.fail_once.discard(envelope.id)
            if not failing:
                self.accepted.append((envelope.id, payload))
        if failing:
            future.set_exception(DeliveryError("scripted 503", retryable=True))
        else:
            future.set_result(Delivered())
        return future

    def close(self) -> None:
        """Nothing to release."""


@dataclass
class Running:
    broker: MemoryBroker
    config: Config
    targets: dict[str, Recorder]
    stores: Stores
    publisher: MemoryPublisher  # the workers' own

    def acked(self, route: str, envelope: Envelope) -> bool:
        """Delivered and committed: its applied version is in the store."""
        return self.stores.idempotency.seen(route, envelope.id)

    def send(self, route: str, *envelopes: Envelope) -> None:
        publisher = self.broker.publisher("test")
        publisher.start()
        try:
            for envelope in envelopes:
                publisher.publish("", queue_name(route), envelope.to_json(),
                                  Properties(message_id=envelope.id)).result(5)
        finally:
            publisher.stop()


def outcome(route: str, name: str) -> float:
    return REGISTRY.get_sample_value("silobridge_messages_total", {
        "route": route, "target": "scripted", "outcome": name}) or 0.0


@contextmanager
def running(tmp_path: Path, routes: list[dict[str, Any]],
            enrichment: dict[str, Enrichment] | None = None,
            prefetch: int = 10) -> Iterator[Running]:
    config = Config.model_validate({
        "retry": {"attempts": 3, "initial_delay": 0.05, "multiplier": 1},
        "routes": [{"target": {"type": "scripted"}, **r} for r in routes]})
    stores = open_stores(StoreConfig(path=str(tmp_path / "store.db")))
    broker = MemoryBroker(topology_for(config))
    publisher = broker.publisher()
    publisher.start()
    targets = {r.name: Recorder() for r in config.routes}
    handlers, workers = {}, {}
    for route in config.routes:
        worker = RouteWorker(route, config.retry_for(route), targets[route.name], publisher,
                             stores, lambda: None, paired=config.echo_pair(route),
                             enrichment=(enrichment or {}).get(route.name))
        handlers[queue_name(route.name)] = worker.handle
        workers[route.name] = worker

    def commit(records: list[tuple[str, str]]) -> Future[None]:
        """As the daemon does: each route's records through its worker's group commit."""
        return all_done([workers[name].commit([r for r in records if r[0] == name])
                         for name in {r[0] for r in records}])

    consumer = broker.consumer(handlers, prefetch=prefetch, before_ack=commit)
    consumer.start()
    try:
        yield Running(broker, config, targets, stores, publisher)
    finally:
        consumer.stop()
        publisher.stop()
        broker.close()
        stores.close()


def update(prefix: str, subject: str, second: int, **data: Any) -> Envelope:
    return Envelope.new(source="crm/t", type=f"{prefix}.customer.updated", subject=subject,
                        time=T0 + timedelta(seconds=second), data={"no": subject, **data})


def test_an_older_event_after_a_newer_one_is_dropped_as_stale(tmp_path: Path,
                                                              prefix: str) -> None:
    route = {"name": prefix, "bind": [f"{prefix}.customer.*"], "sync": {"stale": "drop"}}
    with running(tmp_path, [route]) as run:
        newer, older = update(prefix, "C-1", 2, v=2), update(prefix, "C-1", 1, v=1)
        run.send(prefix, newer)
        assert wait_until(lambda: run.acked(prefix, newer))
        run.send(prefix, older)
        assert wait_until(lambda: outcome(prefix, "stale") == 1)
        assert run.targets[prefix].calls == [newer.id]


def test_stale_deliver_writes_the_older_event_anyway(tmp_path: Path, prefix: str) -> None:
    route = {"name": prefix, "bind": [f"{prefix}.customer.*"], "sync": {"stale": "deliver"}}
    with running(tmp_path, [route]) as run:
        newer, older = update(prefix, "C-1", 2), update(prefix, "C-1", 1)
        run.send(prefix, newer)
        assert wait_until(lambda: run.acked(prefix, newer))
        run.send(prefix, older)
        assert wait_until(lambda: len(run.targets[prefix].accepted) == 2)
        assert outcome(prefix, "stale") == 0


def _ordered(prefix: str) -> dict[str, Any]:
    return {"name": prefix, "bind": [f"{prefix}.customer.*"],
            "sync": {"ordering": "subject", "hold_delay": 0.05}}


def _first_fails_once(target: Recorder, prefix: str) -> tuple[Envelope, Envelope]:
    """Two updates of C-1; the target fails the first once (it waits in a retry tier)."""
    first, second = update(prefix, "C-1", 1, v=1), update(prefix, "C-1", 2, v=2)
    target.fail_once.add(first.id)
    return first, second


def test_ordering_holds_a_subject_while_its_earlier_event_waits_in_a_retry_tier(
    tmp_path: Path, prefix: str
) -> None:
    # Given: the first update of C-1 fails once and waits in a retry tier
    with running(tmp_path, [_ordered(prefix)]) as run:
        target = run.targets[prefix]
        first, second = _first_fails_once(target, prefix)
        other = update(prefix, "C-2", 1, v=1)
        # When: the second update of C-1 and one of C-2 arrive meanwhile
        run.send(prefix, first, second, other)
        # Then: C-2 is not held back, C-1 reaches the target in order, nothing is dropped
        assert wait_until(lambda: len(target.accepted) == 3)
        order = [ident for ident, _ in target.accepted]
        assert order.index(first.id) < order.index(second.id)
        assert outcome(prefix, "held") >= 1
        assert order.index(other.id) < order.index(first.id)  # not behind C-1's retry
        assert run.broker.depth(hold_name(prefix)) == 0
        assert run.broker.depth(dlq_name(prefix)) == 0


def test_a_held_event_whose_hold_copy_cannot_be_published_waits_instead_of_requeueing(
    tmp_path: Path, prefix: str
) -> None:
    # Given: C-1's first update waits in a retry tier, and then the workers' publisher is away
    with running(tmp_path, [_ordered(prefix)]) as run:
        target = run.targets[prefix]
        first, second = _first_fails_once(target, prefix)
        run.send(prefix, first)
        assert wait_until(lambda: run.broker.depth(retry_name(prefix, 1)) == 1)
        run.publisher.stop()
        # When: the second update arrives and is held, but its hold copy cannot be published
        run.send(prefix, second)
        # Then: it waits unacked (before, it was requeued at once, round and round, spending
        # the quorum queue's delivery limit) ...
        assert wait_until(lambda: [i for i, _ in target.accepted] == [first.id])
        assert not wait_until(lambda: outcome(prefix, "requeued") > 0, 1.0)
        # ... and once the publisher is back it is held, comes back and is delivered in order
        run.publisher.start()
        assert wait_until(lambda: [i for i, _ in target.accepted] == [first.id, second.id], 10)
        assert outcome(prefix, "requeued") == 0
        assert outcome(prefix, "held") >= 1


def test_ordering_frees_the_subject_when_the_earlier_event_is_dead_lettered(
    tmp_path: Path, prefix: str
) -> None:
    route = {"name": prefix, "bind": [f"{prefix}.customer.*"],
             "retry": {"attempts": 0}, "sync": {"ordering": "subject", "hold_delay": 0.05}}
    with running(tmp_path, [route]) as run:
        target = run.targets[prefix]
        first, second = update(prefix, "C-1", 1), update(prefix, "C-1", 2)
        target.fail_once.add(first.id)
        run.send(prefix, first, second)
        assert wait_until(lambda: [i for i, _ in target.accepted] == [second.id])
        assert wait_until(lambda: run.broker.depth(dlq_name(prefix)) == 1)


def test_an_event_without_a_subject_is_dead_lettered_with_the_reason(
    tmp_path: Path, prefix: str
) -> None:
    route = {"name": prefix, "bind": [f"{prefix}.customer.*"], "sync": {"ordering": "subject"}}
    with running(tmp_path, [route]) as run:
        bare = Envelope.new(source="crm/t", type=f"{prefix}.customer.updated", data={})
        run.send(prefix, bare)
        assert wait_until(lambda: run.broker.depth(dlq_name(prefix)) == 1)
        assert run.targets[prefix].calls == []


def _pair(prefix: str, origin: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    there, back = f"{prefix}-to-erp", f"{prefix}-to-crm"
    return [
        {"name": there, "bind": [f"{prefix}crm.customer.*"],
         "sync": {"echo": {"pair": back, "fields": ["name", "price"]}}},
        {"name": back, "bind": [f"{prefix}erp.customer.*"],
         "sync": {"echo": {"pair": there, "fields": ["name", "price"], "origin": origin}}},
    ]


def _change(prefix: str, system: str, subject: str, second: int, **data: Any) -> Envelope:
    return Envelope.new(source=f"{system}/t", type=f"{prefix}{system}.customer.updated",
                        subject=subject, time=T0 + timedelta(seconds=second),
                        data={"no": subject, **data})


def test_the_echo_of_a_write_is_not_written_back_but_a_genuine_change_is(
    tmp_path: Path, prefix: str
) -> None:
    there, back = f"{prefix}-to-erp", f"{prefix}-to-crm"
    with running(tmp_path, _pair(prefix)) as run:
        # Given: a CRM change written into the ERP
        run.send(there, _change(prefix, "crm", "C-1", 1, name="Ada", price=10))
        assert wait_until(lambda: len(run.targets[there].accepted) == 1)
        # When: the ERP reports that write (with its own extra fields), then a genuine edit
        run.send(back, _change(prefix, "erp", "C-1", 2, name="Ada", price="10", rev=9))
        assert wait_until(lambda: outcome(back, "echo") == 1)
        run.send(back, _change(prefix, "erp", "C-1", 3, name="Ada", price=12))
        # Then: only the genuine edit reaches the CRM, once
        assert wait_until(lambda: len(run.targets[back].accepted) == 1)
        assert run.targets[back].accepted[0][1]["price"] == 12
        # and its own echo from the CRM does not go to the ERP again
        run.send(there, _change(prefix, "crm", "C-1", 4, name="Ada", price=12))
        assert wait_until(lambda: outcome(there, "echo") == 1)
        assert len(run.targets[there].accepted) == 1


def test_an_origin_marker_recognises_echoes_without_a_fingerprint(
    tmp_path: Path, prefix: str
) -> None:
    back = f"{prefix}-to-crm"
    marker = {"field": "changeSource", "values": ["INTEGRATION"]}
    with running(tmp_path, _pair(prefix, marker)) as run:
        run.send(back, _change(prefix, "erp", "C-9", 1, name="X", changeSource="INTEGRATION"))
        assert wait_until(lambda: outcome(back, "echo") == 1)
        run.send(back, _change(prefix, "erp", "C-9", 2, name="Y", changeSource="CRM_UI"))
        assert wait_until(lambda: len(run.targets[back].accepted) == 1)
