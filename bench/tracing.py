"""What tracing costs a route's worker per message: off, sampled, and on for every message.

A broker-free microbenchmark of ``RouteWorker.handle``: the same envelope (with a traceparent,
as the ingress writes it) handed to the worker again and again, a target that accepts at once,
a publisher that confirms at once, no mapping. What is left is the worker's own path and the
tracing hooks on it, measured three ways:

- ``off``: no tracer installed (the default): the hooks are no-ops;
- ``sampled out``: tracing on, but the sampler keeps nothing (``always_off``): spans are made
  non-recording, their context still propagated;
- ``on``: every message traced (``always_on``), spans handed to a batch processor whose
  exporter drops them (the export itself runs on the SDK's thread in a real process).

Each figure is the best of ``--rounds`` runs of ``--messages`` messages, in µs per message; the
extra cost is the difference to ``off``. Run it on a quiet machine for absolute figures; the
differences are what the docs quote.

Run:  .venv/bin/python -m bench.tracing [--messages 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler

from middleware import tracing
from middleware.adapter import Delivered
from middleware.broker.properties import Properties
from middleware.config.models import Config, StoreConfig
from middleware.envelope import Envelope
from middleware.pipeline import RouteWorker
from middleware.stores import open_stores

__all__ = ["NullDelivery", "main"]

_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class _Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class _Accepting:
    def __init__(self) -> None:
        self._done: Future[Delivered] = Future()
        self._done.set_result(Delivered())

    def start(self, context: Any) -> None:
        """Nothing to open."""

    def deliver(self, envelope: Envelope, payload: Any) -> Future[Delivered]:
        return self._done

    def close(self) -> None:
        """Nothing to release."""


class NullDelivery:
    """A delivery as the worker sees it; settling does nothing (also ``bench.worker.handle``)."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.properties = Properties(message_id="m")
        self.redelivered = False
        self.received = time.monotonic()
        self.settled = False
        self.headers: dict[str, Any] = {}

    def ack(self, record: Any = None) -> None:
        self.settled = True

    def nack(self) -> None:
        self.settled = True


def _per_message(worker: RouteWorker, messages: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        # distinct ids, or the worker's set of recent ids would make them duplicates
        deliveries = [NullDelivery(Envelope.new(
            source="crm/bench", type="crm.customer.updated", data={"customer_no": "C-1"},
            traceparent=_TRACEPARENT).to_json()) for _ in range(messages)]
        started = time.perf_counter()
        for delivery in deliveries:
            worker.handle(delivery)
        best = min(best, (time.perf_counter() - started) / messages)
    return best * 1e6


def _worker(config: Config, directory: Path) -> RouteWorker:
    (route,) = config.routes
    stores = open_stores(StoreConfig(path=str(directory / "store.db")))
    return RouteWorker(route, config.retry_for(route), _Accepting(), None,  # type: ignore[arg-type]
                       stores, lambda: None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    config = Config.model_validate({"routes": [
        {"name": "bench-tracing", "bind": ["crm.customer.*"], "target": {"type": "amqp"}}]})
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as directory:
        cases: list[tuple[str, Sampler | None]] = [
            ("off", None), ("sampled out", ALWAYS_OFF), ("on", ALWAYS_ON)]
        for label, sampler in cases:
            if sampler is not None:
                provider = TracerProvider(sampler=sampler)
                provider.add_span_processor(BatchSpanProcessor(_Drop(), max_queue_size=65536))
                tracing.install(provider)
            try:
                worker = _worker(config, Path(directory))
                results[label] = _per_message(worker, args.messages, args.rounds)
            finally:
                tracing.shutdown()
    print(f"machine: {platform.machine()}, Python {platform.python_version()}")
    for label, value in results.items():
        extra = value - results["off"]
        print(f"{label:>12}: {value:7.1f} µs/message" + (f"  (+{extra:.1f})" if extra else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
