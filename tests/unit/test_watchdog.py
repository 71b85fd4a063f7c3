"""The watchdog and the broker loop's liveness: a dead thread is never silent (issue 11.1).

No network: the broker loop runs without connections, the ops app under Starlette's test client.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from middleware.broker.rabbitmq.connection import BrokerLoop
from middleware.health import ops_app
from middleware.log import configure_logging
from middleware.watchdog import EXIT_CODE, Watchdog

CARD = "4111 1111 1111 1111"


@pytest.fixture
def watchdog() -> Iterator[Watchdog]:
    dog = Watchdog()
    previous = dog.install()
    yield dog
    threading.excepthook = previous


@pytest.fixture
def log_stream() -> io.StringIO:
    stream = io.StringIO()
    configure_logging(json=True, stream=stream)
    return stream


def _die() -> None:
    raise RuntimeError(f"worker failed while handling card {CARD}")


def test_watchdog_trips_on_a_dying_thread_and_readiness_turns_false_with_the_reason(
    watchdog: Watchdog, log_stream: io.StringIO
) -> None:
    client = TestClient(ops_app(lambda: {"started": True}, watchdog.check))
    assert client.get("/readyz").status_code == 200
    # Given a watched long-lived thread
    thread = threading.Thread(target=_die, name="amqp-loop", daemon=True)
    watchdog.watch_thread(thread)
    # When it dies of an exception
    thread.start()
    thread.join(5)
    # Then the process is asked to exit with a non-zero code
    assert watchdog.tripped.wait(5)
    assert watchdog.exit_code == EXIT_CODE != 0
    assert watchdog.reason == "thread amqp-loop died: RuntimeError"
    # And /readyz and /healthz answer 503 with the reason
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["ready"] is False
    assert ready.json()["reason"] == "thread amqp-loop died: RuntimeError"
    assert client.get("/healthz").status_code == 503
    # And the traceback went through the masking logger, as JSON, with the card masked
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    died = [line for line in lines if line["event"] == "thread ended by an exception"]
    assert died and died[0]["thread"] == "amqp-loop"
    assert "RuntimeError" in died[0]["exception"]
    assert CARD not in log_stream.getvalue()


def test_watchdog_check_trips_on_a_thread_that_ended_without_an_exception(
    watchdog: Watchdog,
) -> None:
    thread = threading.Thread(target=lambda: None, name="http-ingress", daemon=True)
    thread.start()
    thread.join(5)
    watchdog.watch_thread(thread)
    assert watchdog.check() == "thread http-ingress is no longer running"
    assert watchdog.exit_code == EXIT_CODE


def test_watchdog_disarmed_for_an_orderly_stop_does_not_trip(watchdog: Watchdog) -> None:
    thread = threading.Thread(target=lambda: None, name="http-ops", daemon=True)
    watchdog.watch_thread(thread)
    thread.start()
    thread.join(5)
    watchdog.disarm()
    assert watchdog.check() is None
    assert watchdog.exit_code is None


def _errors(where: str) -> float:
    value = REGISTRY.get_sample_value("silobridge_broker_callback_errors_total",
                                      {"where": where})
    return value or 0.0


def test_broker_loop_survives_a_raising_callback_and_reports_it() -> None:
    loop = BrokerLoop()
    loop.acquire()
    try:
        before = _errors("scheduled")
        ran = threading.Event()
        # When a scheduled callback raises
        assert loop.call_soon(_die)
        assert loop.call_soon(ran.set)
        # Then the loop runs the next one, counts the error, and keeps turning
        assert ran.wait(5)
        assert _errors("scheduled") == before + 1
        assert loop.thread.is_alive()
        assert loop.turning()
    finally:
        loop.release()


def test_broker_loop_not_turning_once_its_thread_died(watchdog: Watchdog) -> None:
    loop = BrokerLoop()
    loop.acquire()
    watchdog.watch_thread(loop.thread)
    deadline = time.monotonic() + 5
    while not loop.turning() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert loop.turning()
    # When something raises past the guards (straight on the loop, as pika itself could)
    loop.ioloop.call_soon_threadsafe(_die)
    loop.thread.join(5)
    # Then the loop no longer counts as turning, and the watchdog has tripped
    assert not loop.turning()
    assert watchdog.tripped.wait(5)
    assert watchdog.reason == "thread amqp-loop died: RuntimeError"
