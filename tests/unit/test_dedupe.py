"""publish_once: claim -> publish -> confirm | release, on the embedded store and an in-memory
publisher. What a failure leaves behind decides whether the sender's retry publishes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from middleware.adapter import AdapterContext
from middleware.config.models import BrokerConfig, StoreConfig
from middleware.ingress.publishing import InProgress, StoreFailed, publish_once
from middleware.envelope import Envelope
from middleware.errors import BrokerError
from middleware.stores import Stores, open_stores
from tests.unit.soap.helpers import MemoryPublisher

NS = "ingress:test"


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    opened = open_stores(StoreConfig(path=str(tmp_path / "store.db")))
    yield opened
    opened.close()


def _context(stores: Stores, publisher: Any, publish_timeout: float = 2) -> AdapterContext:
    return AdapterContext(publisher, BrokerConfig(publish_timeout=publish_timeout), stores,
                          Path("."))


def _event(ident: str) -> tuple[str, Envelope]:
    return ident, Envelope.new(source="test", type="t.customer.updated", data={}, id=ident)


def _errors(operation: str) -> float:
    return REGISTRY.get_sample_value("silobridge_store_errors_total",
                                     {"store": "idempotency", "operation": operation}) or 0.0


def test_publish_once_publishes_a_key_once_and_counts_later_copies_as_duplicates(
    stores: Stores,
) -> None:
    publisher = MemoryPublisher()
    context = _context(stores, publisher)
    first = publish_once(context, NS, [_event("a"), (None, _event("x")[1])], "ep")
    assert len(first.ids) == 2 and first.duplicates == 0
    again = publish_once(context, NS, [_event("a")], "ep")
    assert (again.ids, again.duplicates) == ([], 1)
    assert publisher.ids.count("a") == 1


def test_publish_once_releases_a_failed_publish_so_the_resend_publishes(stores: Stores) -> None:
    # Given a broker that nacks "b" but confirms "a"
    publisher = MemoryPublisher()
    publisher.fail = lambda event: event["id"] == "b"
    context = _context(stores, publisher)
    with pytest.raises(BrokerError):
        publish_once(context, NS, [_event("a"), _event("b")], "ep")
    # Then "a" is done (not published twice) and "b" was released, not left pending
    publisher.fail = lambda _event: False
    resend = publish_once(context, NS, [_event("a"), _event("b")], "ep")
    assert (resend.ids, resend.duplicates) == (["b"], 1)
    assert publisher.ids == ["a", "b"]


def test_publish_once_releases_when_the_publisher_raises(stores: Stores) -> None:
    class Stopped:
        def publish(self, *_args: Any, **_kwargs: Any) -> Any:
            raise RuntimeError("publisher stopped")

    with pytest.raises(BrokerError, match="publisher stopped"):
        publish_once(_context(stores, Stopped()), NS, [_event("a")], "ep")
    assert stores.idempotency.claim(NS, ["a"], stale_after=60).won == ["a"]


def test_publish_once_refuses_while_another_copy_holds_the_claim(stores: Stores) -> None:
    publisher = MemoryPublisher()
    owner = stores.idempotency.claim(NS, ["b"], stale_after=60)
    with pytest.raises(InProgress):
        publish_once(_context(stores, publisher), NS, [_event("a"), _event("b")], "ep")
    assert publisher.ids == []  # nothing published, and "a" was not kept claimed:
    assert stores.idempotency.claim(NS, ["a"], stale_after=60).won == ["a"]
    assert owner.won == ["b"]


def test_publish_once_takes_over_a_claim_whose_owner_died(stores: Stores) -> None:
    # Given a claim made by a process that died before confirming or releasing
    stores.idempotency.claim(NS, ["a"], stale_after=60)
    publisher = MemoryPublisher()
    context = _context(stores, publisher, publish_timeout=0.05)  # stale after 0.15 s
    with pytest.raises(InProgress):
        publish_once(context, NS, [_event("a")], "ep")
    time.sleep(0.2)
    assert publish_once(context, NS, [_event("a")], "ep").ids == ["a"]
    assert publisher.ids == ["a"]


def test_publish_once_store_failure_publishes_nothing_and_is_counted(stores: Stores) -> None:
    publisher = MemoryPublisher()
    before = _errors("claim")
    stores.idempotency.close()  # every call now fails like a lost database
    with pytest.raises(StoreFailed):
        publish_once(_context(stores, publisher), NS, [_event("a")], "ep")
    assert publisher.ids == []
    assert _errors("claim") == before + 1
