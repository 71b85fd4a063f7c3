"""Worker throughput: silobridge vs raw pika vs RabbitMQ's shovel, back to back, one broker.

Each program does the same move: take a ~1 KB JSON event from a queue, map the 20 fields of
the reference mapping, publish the result persistent with publisher confirms, ack the source
after the confirm. silobridge runs as ``silobridge run --role worker`` with the full pipeline on
(envelope parsing, source and target JSON Schema validation, the compiled mapping, idempotency
records, metrics). Two modes: a backlog drained from a full queue, and a producer publishing at
full speed while the consumer runs. Ratios are silobridge / baseline of the same run.

Run:  .venv/bin/python -m bench.worker [--messages 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pika
import yaml

from bench.ingress import Served, apply_topology, free_port, machine, route_queue_names
from bench.mapping_engine import REFERENCE_MAPPING, SOURCE
from bench.procs import broker_pid, cpu_seconds
from middleware.broker.ingest import envelope_properties
from middleware.broker.rabbitmq.publisher import Publisher
from middleware.config.models import BrokerConfig
from middleware.envelope import Envelope

HERE = Path(__file__).parent
URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
# Every name is per run: RabbitMQ 3.10 can refuse to re-create a quorum queue deleted a moment
# ago, and two runs side by side on one broker (bench.store imports these) must neither feed
# nor delete each other's queues.
RUN = os.getpid()
EVENT_TYPE = f"bench.order-{RUN}.created"
ROUTE = f"bench-{RUN}"
ROUTE_QUEUES = route_queue_names(ROUTE)  # all removed between runs
OUT_EXCHANGE, OUT_QUEUE, SRC_QUEUE = f"bench.out.{RUN}", f"bench.dst.{RUN}", f"bench.src.{RUN}"
SHOVEL = f"bench-shovel-{RUN}"


class Broker:
    """A blocking connection for setup and for watching the output queue's depth."""

    def __init__(self) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(URL))
        self.channel = self.connection.channel()

    def reset(self, source_type: str) -> None:
        for name in (SRC_QUEUE, OUT_QUEUE, *ROUTE_QUEUES):
            self.channel.queue_delete(name)
        self.channel.exchange_declare(OUT_EXCHANGE, "topic", durable=True)
        for name, kind in ((SRC_QUEUE, source_type), (OUT_QUEUE, "quorum")):
            self.channel.queue_declare(name, durable=True, arguments={"x-queue-type": kind})
        self.channel.queue_bind(OUT_QUEUE, OUT_EXCHANGE, "#")

    def depth(self, queue: str) -> int:
        return int(self.channel.queue_declare(queue, passive=True).method.message_count)


def events(count: int) -> list[Envelope]:
    return [Envelope.new(source="crm/bench", type=EVENT_TYPE, subject=f"OPP-{n}", data=SOURCE)
            for n in range(count)]


def publish(exchange: str, key: str, envelopes: list[Envelope]) -> None:
    """Pipelined confirmed publishing (silobridge's own publisher, as fast as pika gets)."""
    publisher = Publisher(BrokerConfig(url=URL, publish_timeout=60), name="bench-producer")
    assert publisher.start(wait=10)
    futures = [publisher.publish(exchange, key, e.to_json(), envelope_properties(e),
                                 purpose="bench") for e in envelopes]
    for future in futures:
        future.result(120)
    publisher.stop()


def wait_for(broker: Broker, total: int, started: float | None, timeout: float = 300,
             watch: Sequence[Callable[[], None]] = (),
             probe: Callable[[], tuple[float, ...]] | None = None) -> Window:
    """Messages per second into the output queue: from ``started`` (or the last look that
    found no output yet) until all ``total`` arrived; with ``probe`` (CPU seconds of the
    processes doing the work), what each spent over that same span.

    From the last empty look, not the first non-empty one: a run that finished between two
    looks (the smoke run's 500 messages) had no time span at all and divided by zero.

    ``watch``: checks that raise once a process doing the work died (``Served.check_alive``),
    so a dead worker fails the run at once, with its log, instead of after ``timeout``."""
    empty_at = time.monotonic() if started is None else started
    first = probe() if probe is not None else ()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for check in watch:
            check()
        count = broker.depth(OUT_QUEUE)
        now = time.monotonic()
        if count >= total:
            spent = tuple(b - a for a, b in zip(first, probe(), strict=True)) if probe else ()
            return Window(total / (now - empty_at), spent)
        if count == 0 and started is None:
            empty_at = now
            first = probe() if probe is not None else ()
        time.sleep(0.01)
    raise TimeoutError(f"only {broker.depth(OUT_QUEUE)} of {total} arrived")


@dataclass(frozen=True)
class Window:
    """One timed run: its rate and the CPU seconds its processes spent meanwhile."""

    rate: float
    cpu: tuple[float, ...] = ()


# -- the three consumers -------------------------------------------------------------------

class Baseline:
    name = "raw pika"

    def __init__(self, total: int) -> None:
        self.total = total
        self.process: subprocess.Popen[bytes] | None = None

    def source(self) -> tuple[str, str]:
        return "", SRC_QUEUE

    def prepare(self) -> None:
        """Anything to do before the source queue fills (nothing for the pass-through)."""

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "bench.worker.baseline", URL,
                                         SRC_QUEUE, OUT_EXCHANGE, "erp.order", str(self.total)])
        time.sleep(0.5)

    @property
    def pid(self) -> int | None:
        """The process doing the work, for its CPU time (None: the broker does it)."""
        return self.process.pid if self.process is not None else None

    def check_alive(self) -> None:
        """Raise once the pass-through failed (it exits 0 after its last message; its
        traceback went to this terminal)."""
        if self.process is not None and self.process.poll() not in (None, 0):
            raise RuntimeError(f"the raw pika pass-through exited with "
                               f"{self.process.returncode}")

    def stop(self) -> None:
        """The pass-through exits after its last message; one that hangs is killed."""
        assert self.process is not None
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


class Shovel(Baseline):
    name = "shovel"

    @property
    def pid(self) -> int | None:
        return None  # the broker moves the messages itself

    def start(self) -> None:
        value = json.dumps({"src-uri": "amqp://", "src-queue": SRC_QUEUE,
                            "src-prefetch-count": 2000, "dest-uri": "amqp://",
                            "dest-exchange": OUT_EXCHANGE, "dest-exchange-key": "erp.order",
                            "ack-mode": "on-confirm"})
        command = ["rabbitmqctl", "-q", "set_parameter", "shovel", SHOVEL, value]
        done = subprocess.run(command, capture_output=True, timeout=60)
        if done.returncode != 0:
            # The plugin is off (no "shovel" component): enable it, then once more. Only then:
            # each rabbitmq-plugins call takes seconds even when the plugin is on already.
            subprocess.run(["rabbitmq-plugins", "-q", "enable", "rabbitmq_shovel"], check=True,
                           capture_output=True, timeout=120)
            subprocess.run(command, check=True, capture_output=True, timeout=60)

    def stop(self) -> None:
        subprocess.run(["rabbitmqctl", "-q", "clear_parameter", "shovel", SHOVEL],
                       check=True, capture_output=True, timeout=60)


class Silobridge(Baseline):
    name = "silobridge"

    def __init__(self, total: int, workdir: Path) -> None:
        super().__init__(total)
        self.workdir = workdir
        self.ops_port = free_port()
        self.server: Served | None = None
        mapping = REFERENCE_MAPPING.replace(
            "mapping: bench-order\n",
            f"mapping: bench-order\nsource: {{schema: {HERE / 'files/order-source.json'}}}\n"
            f"target: {{schema: {HERE / 'files/order-target.json'}}}\n")
        (workdir / "mapping.yaml").write_text(mapping)
        self.config = workdir / "config.yaml"
        self.config.write_text(yaml.safe_dump({
            "broker": {"url": URL, "prefetch": 2000},
            "ops": {"port": self.ops_port},
            "store": {"path": str(workdir / "store.db")},
            "routes": [{"name": ROUTE, "bind": [EVENT_TYPE], "mapping": "mapping.yaml",
                        "target": {"type": "amqp", "exchange": OUT_EXCHANGE,
                                   "routing_key": "erp.order"}}],
        }))

    def source(self) -> tuple[str, str]:
        return "silobridge.events", EVENT_TYPE

    def prepare(self) -> None:
        (self.workdir / "store.db").unlink(missing_ok=True)
        apply_topology(self.config)

    def start(self) -> None:
        self.server = Served([sys.executable, "-m", "middleware", "run", "-c", str(self.config),
                              "--role", "worker", "--log-format", "json"], self.ops_port,
                             log=self.workdir / "daemon.log")
        self.server.wait_listening()
        deadline = time.monotonic() + 30  # ready = consuming, so a live run times the work only
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"http://127.0.0.1:{self.ops_port}/readyz", timeout=1)
                if ready.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"silobridge did not become ready; see {self.workdir / 'daemon.log'}")

    @property
    def pid(self) -> int | None:
        return self.server.pid if self.server is not None else None

    def check_alive(self) -> None:
        if self.server is not None:
            self.server.check_alive()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()  # SIGTERM, and a kill if it does not drain in time


def run_once(consumer: Baseline, broker: Broker, source_type: str, mode: str,
             total: int) -> Window:
    """One timed run; its CPU seconds are the consumer's and the broker's (0 where absent)."""
    broker.reset(source_type)
    consumer.prepare()
    exchange, key = consumer.source()
    envelopes = events(total)
    if mode == "backlog":
        publish(exchange, key, envelopes)
    consumer.start()
    rabbit = broker_pid()

    def probe() -> tuple[float, float]:
        pid = consumer.pid
        return (cpu_seconds(pid) if pid else 0.0, cpu_seconds(rabbit) if rabbit else 0.0)

    try:  # the consumer is stopped (the daemon drained, the shovel removed) also on failure
        if mode == "backlog":
            return wait_for(broker, total, None, watch=[consumer.check_alive], probe=probe)
        started = time.monotonic()
        producer = threading.Thread(target=publish, args=(exchange, key, envelopes))
        producer.start()
        window = wait_for(broker, total, started, watch=[consumer.check_alive], probe=probe)
        producer.join()
        return window
    finally:
        consumer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default="backlog,live")
    parser.add_argument(
        "--queues", default="quorum",
        help="source queue types of the baselines (silobridge's route queues are quorum)")
    args = parser.parse_args(argv)
    broker = Broker()
    with tempfile.TemporaryDirectory() as tmp:
        consumers = [Baseline(args.messages), Shovel(args.messages),
                     Silobridge(args.messages, Path(tmp))]
        try:
            for queue_type in args.queues.split(","):
                for mode in args.modes.split(","):
                    runs: dict[str, list[Window]] = {}
                    for _ in range(args.rounds):  # interleaved, so noise hits all alike
                        for consumer in consumers:
                            window = run_once(consumer, broker, queue_type, mode, args.messages)
                            runs.setdefault(consumer.name, []).append(window)
                    medians = {name: statistics.median(w.rate for w in runs[name])
                               for name in runs}
                    row = {"queue": queue_type, "mode": mode,
                           **{name: round(rate) for name, rate in medians.items()},
                           "ratio_pika": round(medians["silobridge"] / medians["raw pika"], 2),
                           "ratio_shovel": round(medians["silobridge"] / medians["shovel"], 2),
                           "cpu_us": {name: _cpu_per_message(windows, args.messages)
                                      for name, windows in runs.items()}}
                    print(json.dumps(row), flush=True)
        finally:
            for name in (*ROUTE_QUEUES, SRC_QUEUE, OUT_QUEUE):
                broker.channel.queue_delete(name)
            broker.channel.exchange_delete(OUT_EXCHANGE)
            broker.connection.close()
    print(f"# {machine()}; {args.messages} messages, median of {args.rounds}; silobridge "
          f"route queues are always quorum queues")
    return 0


def _cpu_per_message(windows: list[Window], total: int) -> dict[str, int]:
    """Median CPU microseconds per message of the consumer process and of RabbitMQ (the live
    mode's broker figure includes the producer's publishes)."""
    return {who: round(statistics.median(w.cpu[n] for w in windows) * 1e6 / total)
            for n, who in enumerate(("consumer", "broker"))}


if __name__ == "__main__":
    sys.exit(main())
