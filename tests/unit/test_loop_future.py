"""``LoopFuture``: the lock-free confirm Future of publishes made on the broker loop thread."""

from __future__ import annotations

import asyncio
from concurrent.futures import CancelledError, Future, InvalidStateError

import pytest

from middleware.broker.rabbitmq.loopfuture import LoopFuture


def test_callbacks_run_once_on_resolution_and_at_once_when_added_after() -> None:
    future: LoopFuture[str] = LoopFuture()
    calls: list[tuple[str, str]] = []
    future.add_done_callback(lambda f: calls.append(("first", f.result())))
    future.add_done_callback(lambda f: calls.append(("second", f.result())))
    assert calls == [] and not future.done()
    future.set_result("ok")
    future.add_done_callback(lambda f: calls.append(("late", f.result())))
    assert calls == [("first", "ok"), ("second", "ok"), ("late", "ok")]
    assert future.done() and not future.cancelled() and future.exception() is None


def test_an_exception_is_reported_by_exception_and_raised_by_result() -> None:
    future: LoopFuture[None] = LoopFuture()
    error = RuntimeError("nacked")
    future.set_exception(error)
    assert future.exception() is error
    with pytest.raises(RuntimeError, match="nacked"):
        future.result()


def test_it_resolves_once_like_a_future() -> None:
    for resolve in (lambda f: f.set_result(1), lambda f: f.set_exception(ValueError())):
        future: LoopFuture[int] = LoopFuture()
        resolve(future)
        with pytest.raises(InvalidStateError):
            future.set_result(2)
        with pytest.raises(InvalidStateError):
            future.set_exception(ValueError())


def test_a_pending_one_refuses_to_be_waited_for_instead_of_blocking() -> None:
    future: LoopFuture[int] = LoopFuture()
    with pytest.raises(InvalidStateError, match="cannot be waited for"):
        future.result(5)
    with pytest.raises(InvalidStateError):
        future.exception(5)


def test_cancel_settles_a_pending_one_and_a_later_confirm_is_refused() -> None:
    future: LoopFuture[int] = LoopFuture()
    told: list[bool] = []
    future.add_done_callback(lambda f: told.append(f.cancelled()))
    assert future.cancel() and future.cancelled() and future.done()
    assert told == [True]
    with pytest.raises(CancelledError):
        future.result()
    with pytest.raises(InvalidStateError):  # the publisher's confirm handler catches this
        future.set_result(1)
    finished: LoopFuture[int] = LoopFuture()
    finished.set_result(1)
    assert not finished.cancel()


def test_a_raising_callback_does_not_stop_the_others() -> None:
    future: LoopFuture[int] = LoopFuture()
    reached: list[int] = []

    def bad(_f: Future[int]) -> None:
        raise RuntimeError("a bug in one callback")

    future.add_done_callback(bad)
    future.add_done_callback(lambda f: reached.append(f.result()))
    future.set_result(7)
    assert reached == [7]
    future.add_done_callback(bad)  # added after resolution: it runs at once, still guarded
    future.add_done_callback(lambda f: reached.append(f.result()))
    assert reached == [7, 7]


def test_it_is_a_future_for_asyncio_too() -> None:
    """Code that bridges a confirm into asyncio (``wrap_future``) still works once resolved."""
    future: LoopFuture[str] = LoopFuture()
    assert isinstance(future, Future)

    async def bridged() -> str:
        wrapped = asyncio.wrap_future(future)
        future.set_result("confirmed")
        return await wrapped

    assert asyncio.run(bridged()) == "confirmed"
