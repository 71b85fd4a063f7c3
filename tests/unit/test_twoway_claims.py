"""Claims of a route's store threads go to the store together (one round trip per batch), and
a batch the store refuses is asked again event by event, so one bad event holds only its own
thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from middleware.twoway.claims import Claims
from tests.unit.pipeline_helpers import wait_until


class Store:
    """``begin``/``begin_many`` of a sync store: each subject goes once; the first batch waits
    until the test lets it go; a subject named 'bad' makes the store fail."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.release = threading.Event()
        self.lock = threading.Lock()

    def begin_many(self, route: str, items: Sequence[tuple[str, int, str]], ttl: float,
                   claim: bool) -> list[str]:
        with self.lock:
            self.batches.append([subject for subject, _version, _holder in items])
            first = len(self.batches) == 1
        if first:
            self.release.wait(5)
        if any(subject == "bad" for subject, _version, _holder in items):
            raise ConnectionError("the store refuses this statement")
        return ["go"] * len(items)

    def begin(self, route: str, subject: str, version: int, holder: str, ttl: float,
              claim: bool) -> str:
        return self.begin_many(route, [(subject, version, holder)], ttl, claim)[0]


def call(store: str, operation: str, fn: Callable[[], Any]) -> Any:
    """No retrying here: the store's error reaches the asking thread."""
    return fn()


def ask_all(claims: Claims, subjects: list[str]) -> tuple[list[threading.Thread],
                                                            dict[str, object]]:
    answers: dict[str, object] = {}

    def ask(subject: str) -> None:
        try:
            answers[subject] = claims.begin(subject, 1, f"event-{subject}")
        except ConnectionError as exc:
            answers[subject] = exc

    threads = [threading.Thread(target=ask, args=(s,)) for s in subjects]
    for thread in threads:
        thread.start()
    return threads, answers


def test_claims_asked_while_a_batch_is_in_the_store_go_together_in_the_next() -> None:
    store = Store()
    claims = Claims("r", store, call, 30.0, claim=True)  # type: ignore[arg-type]
    first, answers = ask_all(claims, ["A"])
    wait_until(lambda: len(store.batches) == 1)
    # while A's round trip is open, seven more events ask
    more, more_answers = ask_all(claims, [f"S{n}" for n in range(7)])
    wait_until(lambda: len(claims._waiting) == 7)  # all seven wait for the open batch
    store.release.set()
    for thread in first + more:
        thread.join(5)
    assert answers == {"A": "go"}
    assert more_answers == {f"S{n}": "go" for n in range(7)}
    assert len(store.batches) == 2 and sorted(store.batches[1]) == [f"S{n}" for n in range(7)]


def test_claims_of_a_refused_batch_are_asked_again_one_by_one() -> None:
    store = Store()
    claims = Claims("r", store, call, 30.0, claim=True)  # type: ignore[arg-type]
    first, _ = ask_all(claims, ["A"])
    wait_until(lambda: len(store.batches) == 1)
    more, answers = ask_all(claims, ["B", "bad", "C"])
    wait_until(lambda: len(claims._waiting) == 3)
    store.release.set()
    for thread in first + more:
        thread.join(5)
    # the batch of three failed; asked alone, only the bad event's thread gets the error
    assert answers["B"] == "go" and answers["C"] == "go"
    assert isinstance(answers["bad"], ConnectionError)
    assert sorted(store.batches[1]) == ["B", "C", "bad"]
    assert sorted(map(tuple, store.batches[2:])) == [("B",), ("C",), ("bad",)]


@pytest.mark.parametrize("events", [1, 40])
def test_claims_answer_every_event_exactly_once(events: int) -> None:
    store = Store()
    store.release.set()
    claims = Claims("r", store, call, 30.0, claim=True)  # type: ignore[arg-type]
    threads, answers = ask_all(claims, [f"S{n}" for n in range(events)])
    for thread in threads:
        thread.join(5)
    assert answers == {f"S{n}": "go" for n in range(events)}
    asked = [subject for batch in store.batches for subject in batch]
    assert sorted(asked) == sorted(answers)
    assert not claims._busy and not claims._waiting  # the next event leads a new batch
