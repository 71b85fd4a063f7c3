"""The worker's own cost per message, without a broker: what ``bench.worker`` cannot separate.

``bench.worker`` measures a whole process against a busy RabbitMQ on the same two cores, so its
figures move by ±0.1 between runs and cannot show a change of a few microseconds. This one runs
the worker's loop-thread path alone, on the bench's reference message (a ~1 KB CloudEvent, the
20-field mapping of ``bench.mapping_engine`` with both JSON Schemas), two ways:

- ``handle``: ``RouteWorker.handle`` with the real AMQP target and a publisher that confirms at
  once; deliveries whose ack does nothing. Envelope parse, type check, schema checks, mapping, the
  target envelope and its properties, metrics and settling: what RESULTS.md's profile calls
  "silobridge's own work".
- ``loop``: the same worker behind the real RabbitMQ ``Consumer`` and ``Publisher``, with the
  benchmark's thread as their I/O loop and stand-in channels that write nothing (pika's framing
  and the socket are left out, the same for any pika program). Messages arrive in ticks of
  ``--tick`` (as one socket read delivers them); after each tick the broker "confirms" the
  tick's publishes with one ``multiple`` confirm. Acks wait for the idempotency commit on the
  route's store threads, as in the daemon. Timed until the last ack went out.

Figures are µs per message, best of ``--rounds`` runs of ``--messages`` messages: CPU time of
the process and of the thread that did the work (the machine is shared, and wall time under load
says more about the neighbours than about the worker), and wall time. In the daemon the I/O loop
thread is the bottleneck (busy 99 % of the time), so "loop thread" is the figure to compare.
Everything the loop thread does runs on the calling thread, so both cases can also be counted
in instructions, which a shared machine does not disturb: with ``--callgrind`` the timed part
runs inside a call of the builtin ``sorted``, and callgrind collects only there (a ``sorted``
nested in it, the consumer's of each flush's acks, toggles collection off while it runs: a
few instructions per message go uncounted, before and after a change alike)::

    valgrind --tool=callgrind --toggle-collect=builtin_sorted --callgrind-out-file=cg.out \
        .venv/bin/python -m bench.worker.handle --callgrind --cases loop --messages 3000 \
        --rounds 1
    grep ^totals: cg.out   # instructions; divided by 3000: per message (~1 minute)

Run:  .venv/bin/python -m bench.worker.handle [--messages 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import gc
import platform
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pika
from pika.spec import Basic

from adapters.amqp.config import AmqpTargetConfig
from adapters.amqp.outbound import AmqpTarget
from bench.mapping_engine import REFERENCE_MAPPING, SOURCE
from bench.tracing import NullDelivery
from middleware.adapter import AdapterContext
from middleware.broker.ingest import envelope_properties
from middleware.broker.properties import Properties
from middleware.broker.rabbitmq.consumer import Consumer
from middleware.broker.rabbitmq.convert import to_pika
from middleware.broker.rabbitmq.publisher import Publisher
from middleware.config.models import BrokerConfig, Config, StoreConfig
from middleware.envelope import Envelope
from middleware.mapping import load_mapping
from middleware.pipeline import RouteWorker
from middleware.stores import Stores, open_stores

__all__ = ["main"]

HERE = Path(__file__).parent
EVENT_TYPE = "bench.order.created"
QUEUE = "silobridge.route.bench-handle"
CALLGRIND = False  # --callgrind


class _Confirming:
    """A publisher whose every publish is confirmed at once (the ``handle`` case)."""

    connected = True
    fatal = None

    def publish(self, exchange: str, routing_key: str, body: bytes, properties: Properties,
                *, purpose: str = "deliver", mandatory: bool = True,
                result: Any = None) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(result)
        return future


class _Channel:
    """A pika channel stand-in: open, writes nothing, remembers the acks."""

    is_open = True

    def __init__(self) -> None:
        self.acked = 0  # highest tag covered by an ack so far
        self.published = 0

    def basic_publish(self, exchange: str, routing_key: str, body: bytes,
                      properties: pika.BasicProperties, mandatory: bool = False) -> None:
        self.published += 1

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self.acked = max(self.acked, delivery_tag)

    def basic_nack(self, delivery_tag: int, requeue: bool = True) -> None:
        raise AssertionError("nothing may be nacked in this benchmark")


def _bodies(count: int) -> list[bytes]:
    # distinct ids, or the worker's set of recent ids would make them duplicates
    return [Envelope.new(source="crm/bench", type=EVENT_TYPE, subject=f"OPP-{n}",
                         data=SOURCE).to_json() for n in range(count)]


def _worker(directory: Path, publisher: Any, stores: Stores) -> RouteWorker:
    mapping_file = directory / "mapping.yaml"
    mapping_file.write_text(REFERENCE_MAPPING.replace(
        "mapping: bench-order\n",
        f"mapping: bench-order\nsource: {{schema: {HERE / 'files/order-source.json'}}}\n"
        f"target: {{schema: {HERE / 'files/order-target.json'}}}\n"))
    mapping = load_mapping(mapping_file)
    config = Config.model_validate({"routes": [{
        "name": "bench-handle", "bind": [EVENT_TYPE], "mapping": str(mapping_file),
        "target": {"type": "amqp", "exchange": "bench.out", "routing_key": "erp.order"}}]})
    (route,) = config.routes
    target = AmqpTarget(AmqpTargetConfig(exchange="bench.out", routing_key="erp.order"))
    target.start(AdapterContext(publisher, config.broker, stores, directory))
    return RouteWorker(route, config.retry_for(route), target, publisher, stores,
                       lambda: mapping)


def _best(prepare: Callable[[], Any], run: Callable[[Any], None], rounds: int,
          messages: int) -> dict[str, float]:
    """µs per message of ``run(prepare())``, timing ``run`` only, best of ``rounds``: CPU
    time of the process and of this thread (the I/O loop's work), and wall time."""
    best = {"cpu": float("inf"), "loop thread": float("inf"), "wall": float("inf")}
    for _ in range(rounds):
        prepared = prepare()
        gc.collect()
        started = (time.process_time(), time.thread_time(), time.perf_counter())
        if CALLGRIND:  # the only call of the builtin sorted(): callgrind collects inside it
            sorted([prepared], key=lambda item: _ran(run, item))
        else:
            run(prepared)
        ended = (time.process_time(), time.thread_time(), time.perf_counter())
        for name, start, end in zip(best, started, ended, strict=True):
            best[name] = min(best[name], (end - start) / messages * 1e6)
    return best


def _ran(run: Callable[[Any], None], item: Any) -> int:
    run(item)
    return 0


def handle_only(directory: Path, stores: Stores, messages: int,
                rounds: int) -> dict[str, float]:
    worker = _worker(directory, _Confirming(), stores)

    def run(deliveries: list[NullDelivery]) -> None:
        for delivery in deliveries:
            worker.handle(delivery)

    return _best(lambda: [NullDelivery(body) for body in _bodies(messages)], run, rounds,
                 messages)


class _Loop:
    """The broker I/O loop, run by the benchmark's own thread: ``call_soon`` queues, ``run``
    runs what is queued (a commit finishing on a store thread queues its acks here)."""

    def __init__(self) -> None:
        self._calls: deque[Callable[[], Any]] = deque()
        self._queued = threading.Event()

    def in_loop(self) -> bool:
        return True

    def call_soon(self, fn: Callable[[], Any]) -> bool:
        self._calls.append(fn)
        self._queued.set()
        return True

    def call_later(self, delay: float, fn: Callable[[], Any]) -> None:
        """Timers (the publisher's sweep for overdue confirms) never fire here."""

    def run(self, wait: float = 0.0) -> None:
        """Run what is queued; with ``wait``, first wait (at most that long) for something."""
        if wait and self._queued.wait(wait):
            self._queued.clear()
        while self._calls:
            self._calls.popleft()()


def on_loop(directory: Path, stores: Stores, messages: int, rounds: int,
            tick: int) -> dict[str, float]:
    broker = BrokerConfig(url="amqp://unused/")
    loop = _Loop()
    publisher = Publisher(broker, name="bench-handle-publish",
                          loop=loop)  # type: ignore[arg-type]
    consumer = Consumer(broker, {}, prefetch=2000, name="bench-handle-consume",
                        loop=loop)  # type: ignore[arg-type]
    worker = _worker(directory, publisher, stores)
    consumer._before_ack = worker.commit
    publish_channel, consume_channel = _Channel(), _Channel()
    publisher._channel = publish_channel
    publisher._connection.ready.set()
    consumer._channel = consume_channel
    consumer._generation = 1
    on_message = consumer._dispatcher(QUEUE, worker.handle)
    properties = to_pika(envelope_properties(Envelope.new(
        source="crm/bench", type=EVENT_TYPE, data={})))
    tags = iter(range(1, 1 << 62))

    def run(bodies: list[bytes]) -> None:
        for start in range(0, messages, tick):  # one tick at a time, as one socket read
            last = 0
            for body in bodies[start:start + tick]:
                last = next(tags)
                on_message(consume_channel, Basic.Deliver(delivery_tag=last), properties, body)
            loop.run()  # the consumer's flush of what settled meanwhile (nothing yet)
            # the broker confirms the tick's publishes with one multiple confirm
            publisher._on_confirm(SimpleNamespace(
                method=Basic.Ack(delivery_tag=publisher._seq, multiple=True)))
            deadline = time.monotonic() + 30
            while consume_channel.acked < last:  # the acks, once the records are committed
                if time.monotonic() > deadline:
                    raise RuntimeError("the acks did not come")
                loop.run(wait=1.0)

    try:
        return _best(lambda: _bodies(messages), run, rounds, messages)
    finally:
        worker.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tick", type=int, default=200,
                        help="messages per I/O loop tick in the 'loop' case")
    parser.add_argument("--cases", default="handle,loop")
    parser.add_argument("--callgrind", action="store_true",
                        help="run the timed part inside sorted(), for callgrind's "
                             "--toggle-collect=builtin_sorted (see the module docstring)")
    args = parser.parse_args(argv)
    global CALLGRIND
    CALLGRIND = args.callgrind
    gc.freeze()  # as `silobridge run` does after start
    gc.set_threshold(20_000, 20, 50)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases.split(","):
            directory = Path(tmp) / case
            directory.mkdir()
            stores = open_stores(StoreConfig(path=str(directory / "store.db")))
            try:
                if case == "handle":
                    results[case] = handle_only(directory, stores, args.messages, args.rounds)
                else:
                    results[case] = on_loop(directory, stores, args.messages, args.rounds,
                                            args.tick)
            finally:
                stores.close()
    print(f"machine: {platform.machine()}, Python {platform.python_version()}; "
          f"{args.messages} messages, best of {args.rounds}")
    for case, figures in results.items():
        print(f"{case:>8}: " + ", ".join(f"{name} {value:5.1f}" for name, value in figures.items())
              + " µs/message")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
