"""The pieces of a route's enrichment: merging copies, selecting, the bounded TTL cache, and a
Future chain that hands every failure on instead of raising in a callback."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import pytest

from middleware.config.enrich import EnrichStep
from middleware.enrich.cache import AnswerCache
from middleware.enrich.chain import Step, merged, no_trace, selected, then
from middleware.enrich.contract import Prepared
from middleware.envelope import Envelope
from middleware.errors import EnrichError


def test_enrich_merged_copies_the_path_and_leaves_the_original_alone() -> None:
    original = {"Customer": {"No": "C1", "Name": "Ada"}, "other": {"x": 1}}
    result = merged(original, "Customer.Key", "12;abc")
    assert result == {"Customer": {"No": "C1", "Name": "Ada", "Key": "12;abc"},
                      "other": {"x": 1}}
    assert original == {"Customer": {"No": "C1", "Name": "Ada"}, "other": {"x": 1}}
    assert merged({}, "a.b.c", 1) == {"a": {"b": {"c": 1}}}


@pytest.mark.parametrize(("payload", "into", "says"), [
    ([1, 2], "contact", "the payload is list, not an object"),
    ("text", "contact", "the payload is str, not an object"),
    ({"contact": "x"}, "contact.id", "payload.contact is str, not an object"),
])
def test_enrich_merged_refuses_what_cannot_hold_the_answer(payload: Any, into: str,
                                                           says: str) -> None:
    with pytest.raises(EnrichError, match=says) as caught:
        merged(payload, into, 1)
    assert caught.value.retryable is False


def test_enrich_selected_follows_objects_and_list_indexes() -> None:
    answer = {"results": [{"id": "a"}, {"id": "b"}], "total": 2}
    assert selected(answer, "results.1.id") == "b"
    assert selected(answer, "results.-1.id") == "b"
    assert selected(answer, "results.5.id") is None
    assert selected(answer, "total.x") is None
    assert selected(answer, None) is answer


def test_enrich_cache_forgets_after_ttl_and_keeps_at_most_max_entries() -> None:
    now = [0.0]
    cache = AnswerCache(ttl=10, max_entries=2, max_bytes=1_000_000, clock=lambda: now[0])
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == (True, 1)
    cache.put("c", 3)  # "b" was used least recently: it goes
    assert cache.get("b") == (False, None)
    assert len(cache) == 2
    now[0] = 10.5
    assert cache.get("a") == (False, None) and cache.get("c") == (False, None)
    assert (cache.hits, cache.misses) == (1, 3)


def test_enrich_then_hands_on_results_and_every_failure() -> None:
    start: Future[int] = Future()
    doubled = then(start, lambda value: _done(value * 2))

    def broken(value: int) -> Future[int]:
        raise RuntimeError("a bug in a stage")

    failing = then(doubled, broken)
    after_failure = then(failing, lambda value: _done(value + 1))
    start.set_result(21)
    assert doubled.result(1) == 42
    assert isinstance(failing.exception(1), RuntimeError)
    assert isinstance(after_failure.exception(1), RuntimeError)  # later stages never ran


def _done(value: int) -> Future[int]:
    future: Future[int] = Future()
    future.set_result(value)
    return future


def test_enrich_cache_bounds_the_bytes_it_keeps_whatever_the_count() -> None:
    cache = AnswerCache(ttl=60, max_entries=1000, max_bytes=10_000)
    for n in range(50):  # 50 answers of ~1 KB: only the last ~9 fit
        cache.put(f"k{n}", "x" * 1000)
    assert cache.size <= 10_000 and 5 <= len(cache) <= 10
    assert cache.get("k49") == (True, "x" * 1000)
    assert cache.get("k0") == (False, None)
    cache.put("huge", "x" * 20_000)  # larger than the whole budget: not kept, nothing lost
    assert cache.get("huge") == (False, None) and cache.get("k49")[0]


class _Refusing:
    """A step call whose system cannot take work any more (its pool was shut down)."""

    def prepare(self, envelope: Envelope, payload: Any) -> Prepared:
        return Prepared("k", None)

    def fetch(self, prepared: Prepared, trace: Mapping[str, str]) -> Future[Any]:
        raise RuntimeError("cannot schedule new futures after shutdown")


def test_enrich_step_whose_system_refuses_work_fails_retryable() -> None:
    step = Step(EnrichStep.model_validate({"system": "crm", "get": "/x", "into": "c"}),
                _Refusing(), 1, "r")
    error = step.run(Envelope.new(source="s", type="a.b.c", data={}), no_trace,
                     {}).exception(1)
    assert isinstance(error, EnrichError) and error.retryable is True
    assert str(error) == "enrich step 1 (crm) failed: RuntimeError"
