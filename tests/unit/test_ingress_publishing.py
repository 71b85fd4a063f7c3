"""IngressPublisher: claim -> publish -> confirm | release, on the embedded store and an in-memory
publisher. What a failure leaves behind decides whether the sender's retry publishes; the store
is only ever called from worker threads, never from the event loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from middleware.adapter import AdapterContext
from middleware.config.models import BrokerConfig, StoreConfig
from middleware.envelope import Envelope
from middleware.errors import FieldTooLong, Refused
from middleware.ingress.publishing import IngressPublisher, Keyed, Published
from middleware.stores import Stores, open_stores
from tests.unit.soap.helpers import MemoryPublisher

NS = "ingress:ep"


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    opened = open_stores(StoreConfig(path=str(tmp_path / "store.db")))
    yield opened
    opened.close()


def _publisher(stores: Stores, publisher: Any, publish_timeout: float = 2) -> IngressPublisher:
    context = AdapterContext(publisher, BrokerConfig(publish_timeout=publish_timeout), stores,
                             Path("."))
    return IngressPublisher(context, "ep", "test", retry_after=7)


def _publish(ingress: IngressPublisher, keyed: Sequence[Keyed]) -> Published:
    async def run() -> Published:
        return await ingress.publish(keyed)
    return asyncio.run(run())


def _event(ident: str) -> tuple[str, Envelope]:
    return ident, Envelope.new(source="test", type="t.customer.updated", data={}, id=ident)


def _errors(operation: str) -> float:
    return REGISTRY.get_sample_value("silobridge_store_errors_total",
                                     {"store": "idempotency", "operation": operation}) or 0.0


def test_ingress_publisher_publishes_a_key_once_and_counts_later_copies_as_duplicates(
    stores: Stores,
) -> None:
    publisher = MemoryPublisher()
    ingress = _publisher(stores, publisher)
    first = _publish(ingress, [_event("a"), (None, _event("x")[1])])
    assert len(first.ids) == 2 and first.duplicates == 0
    again = _publish(ingress, [_event("a")])
    assert (again.ids, again.duplicates) == ([], 1)
    assert publisher.ids.count("a") == 1


def test_ingress_publisher_releases_a_failed_publish_so_the_resend_publishes(
    stores: Stores,
) -> None:
    # Given a broker that nacks "b" but confirms "a"
    publisher = MemoryPublisher()
    publisher.fail = lambda event: event["id"] == "b"
    ingress = _publisher(stores, publisher)
    with pytest.raises(Refused) as refused:
        _publish(ingress, [_event("a"), _event("b")])
    assert (refused.value.status, refused.value.reason) == (503, "broker_unavailable")
    assert refused.value.headers == {"Retry-After": "7"}
    assert "1 of 2 events were stored" in refused.value.detail
    # Then "a" is done (not published twice) and "b" was released, not left pending
    publisher.fail = lambda _event: False
    resend = _publish(ingress, [_event("a"), _event("b")])
    assert (resend.ids, resend.duplicates) == (["b"], 1)
    assert publisher.ids == ["a", "b"]


def test_ingress_publisher_settles_on_the_delivery_id_not_the_envelope_id(
    stores: Stores,
) -> None:
    # A provider's delivery header differs from the event id the endpoint derives
    publisher = MemoryPublisher()
    ingress = _publisher(stores, publisher)
    envelope = _event("evt-1")[1]
    assert _publish(ingress, [("delivery-9", envelope)]).ids == ["evt-1"]
    assert stores.idempotency.claim(NS, ["delivery-9"], stale_after=60).done == ["delivery-9"]


def test_ingress_publisher_releases_when_the_publisher_raises(stores: Stores) -> None:
    class Stopped:
        def publish(self, *_args: Any, **_kwargs: Any) -> Any:
            raise RuntimeError("publisher stopped")

    with pytest.raises(Refused, match="publisher stopped"):
        _publish(_publisher(stores, Stopped()), [_event("a")])
    assert stores.idempotency.claim(NS, ["a"], stale_after=60).won == ["a"]


def test_ingress_publisher_refuses_while_another_copy_holds_the_claim(stores: Stores) -> None:
    publisher = MemoryPublisher()
    owner = stores.idempotency.claim(NS, ["b"], stale_after=60)
    with pytest.raises(Refused) as refused:
        _publish(_publisher(stores, publisher), [_event("a"), _event("b")])
    assert (refused.value.status, refused.value.reason) == (503, "in_progress")
    assert publisher.ids == []  # nothing published, and "a" was not kept claimed:
    assert stores.idempotency.claim(NS, ["a"], stale_after=60).won == ["a"]
    assert owner.won == ["b"]


def test_ingress_publisher_takes_over_a_claim_whose_owner_died(stores: Stores) -> None:
    # Given a claim made by a process that died before confirming or releasing
    stores.idempotency.claim(NS, ["a"], stale_after=60)
    publisher = MemoryPublisher()
    # (while it is young, it is refused: asked by an ingress that waits long enough for a claim
    # to go stale that no slow machine gets there first)
    with pytest.raises(Refused):
        _publish(_publisher(stores, publisher, publish_timeout=20), [_event("a")])
    ingress = _publisher(stores, publisher, publish_timeout=0.05)  # stale after 0.15 s
    time.sleep(0.2)
    assert _publish(ingress, [_event("a")]).ids == ["a"]
    assert publisher.ids == ["a"]


def test_ingress_publisher_store_failure_publishes_nothing_and_is_counted(
    stores: Stores,
) -> None:
    publisher = MemoryPublisher()
    before = _errors("claim")
    stores.idempotency.close()  # every call now fails like a lost database
    with pytest.raises(Refused) as refused:
        _publish(_publisher(stores, publisher), [_event("a")])
    assert (refused.value.status, refused.value.reason) == (503, "store_unavailable")
    assert publisher.ids == []
    assert _errors("claim") == before + 1


def test_ingress_publisher_refuses_a_field_too_long_before_claiming_anything(
    stores: Stores,
) -> None:
    # A suffixed copy ('#<n>' added by REST) can pass 255 bytes after construction
    publisher = MemoryPublisher()
    long_id = "x" * 300
    envelope = _event("ok")[1].model_copy(update={"id": long_id})
    with pytest.raises(FieldTooLong):
        _publish(_publisher(stores, publisher), [("k", envelope)])
    assert publisher.ids == []
    assert stores.idempotency.claim(NS, ["k"], stale_after=60).won == ["k"]  # never claimed


def test_ingress_publisher_calls_the_store_off_the_loop_and_publishes_on_it(
    stores: Stores,
) -> None:
    # Given a store and a publisher that record the thread that calls them
    loop_thread: list[int] = []
    store_threads: list[int] = []
    real = stores.idempotency

    class Recording:
        def __getattr__(self, name: str) -> Any:
            def call(*args: Any, **kwargs: Any) -> Any:
                store_threads.append(threading.get_ident())
                return getattr(real, name)(*args, **kwargs)
            return call

    class Publisher(MemoryPublisher):
        def publish(self, *args: Any, **kwargs: Any) -> Any:
            loop_thread.append(threading.get_ident())
            return super().publish(*args, **kwargs)

    stores.idempotency = Recording()  # type: ignore[assignment]
    ingress = _publisher(stores, Publisher())

    async def run() -> int:
        await ingress.publish([_event("a")])
        return threading.get_ident()

    # When one keyed event is published
    loop = asyncio.run(run())
    # Then claim and confirm ran on worker threads (two hops), the publish on the loop
    assert len(store_threads) == 2 and loop not in store_threads
    assert loop_thread == [loop]
