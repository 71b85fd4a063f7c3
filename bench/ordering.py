"""The cost of ``sync.ordering: subject``: an ordered route's throughput next to an unordered
one, in the same run, on the same broker, store and machine.

Both routes run in one ``silobridge run --role worker`` process each (one variant at a time,
interleaved per round, medians), on the PostgreSQL store at ``STORE_PG_DSN`` (a schema of its
own, dropped afterwards): the store replicas share, which ordering needs. The backlog is
``--subjects`` x ``--updates`` customer updates, interleaved across subjects with increasing
times, queued before the worker starts; the target is an AMQP exchange (the cheapest target,
so the ordering's store round trips weigh the most) or, with ``--target rest``, a loopback HTTP
server in this process answering 200 (what most real targets are). The unordered route has no
``sync`` section; the ordered one has ``ordering: subject`` and ``stale: drop``. A message counts as
done when it was delivered or dropped as stale (a later update of its subject overtook it); the
rate runs from the first done message to the last, and each round reports how many were
delivered, stale and held. Each round declares routes of its own: with one name for all rounds,
the applied versions of round 1 made nearly every event of the later rounds (the same times)
stale, never delivered, and those rounds measured the ordered route without its target calls.
The check: ordered / unordered >= 0.7.

Over the same span each round also reports the CPU time per message of the worker process and
of its PostgreSQL backends (``cpu_us``, from /proc): on a shared machine the rates swing with
the others' load, the CPU a message costs much less, and it shows where an ordered message's
extra cost lies (the worker's Python or the database).

Run:  .venv/bin/python -m bench.ordering [--subjects 2000] [--updates 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pika
import psycopg
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.ingress import Served, apply_topology, free_port, machine
from bench.procs import cpu_seconds
from middleware.broker.topology import EVENTS_EXCHANGE, dlq_name, hold_name, queue_name, retry_name
from middleware.envelope import Envelope
from middleware.http import ServerThread
from middleware.scrape import parse

URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
PG_DSN = os.environ.get("STORE_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
TARGET = 0.7
RUN = os.getpid()  # in every name: runs side by side must not share (or delete) queues
OUT = f"bench.ordering.out.{RUN}"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _routes(ordered: bool, rest: str | None, round_no: int) -> list[dict[str, Any]]:
    # a name per round: the applied versions of the round before stay in the store, and the
    # next round's events (the same times) would be dropped as stale there, never delivered
    name = (f"bench-ordered-{RUN}-{round_no}" if ordered
            else f"bench-unordered-{RUN}-{round_no}")
    target: dict[str, Any] = (
        {"type": "amqp", "exchange": OUT, "routing_key": "erp.customer"} if rest is None else
        {"type": "rest", "method": "PUT", "concurrency": 16, "timeout": 10,
         "url": f"{rest}/api/customers/{{envelope.subject}}"})
    route: dict[str, Any] = {"name": name, "bind": [f"benchorder.{name}.updated"],
                             "target": target}
    if ordered:
        route["sync"] = {"ordering": "subject", "stale": "drop", "hold_delay": 0.2}
    return [route]


def _events(route: str, subjects: int, updates: int) -> list[Envelope]:
    return [Envelope.new(source="crm/bench", type=f"benchorder.{route}.updated",
                         subject=f"C-{s}", time=T0 + timedelta(milliseconds=u),
                         data={"customer_no": f"C-{s}", "update": u, "name": f"Kunde {s}"})
            for u in range(updates) for s in range(subjects)]


def _publish(channel: Any, envelopes: list[Envelope]) -> None:
    for envelope in envelopes:
        channel.basic_publish(EVENTS_EXCHANGE, envelope.type, envelope.to_json(),
                              pika.BasicProperties(delivery_mode=2, message_id=envelope.id))


def _outcomes(port: int, route: str) -> dict[str, float]:
    """The route's messages by outcome (delivered, stale, held) from the worker's metrics."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return {}
    metrics = parse(text)
    return {o: metrics.sum("silobridge_messages_total", route=route, outcome=o)
            for o in ("delivered", "stale", "held")}


def _cpus(worker: int, application: str) -> dict[int, float]:
    """CPU seconds of the worker and of the PostgreSQL backends its pool opened (by name)."""
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        backends = [int(row[0]) for row in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application,))]
    return {pid: cpu_seconds(pid) for pid in (worker, *backends)}


def _spent(first: dict[int, float], last: dict[int, float], worker: int
           ) -> tuple[float, float]:
    """CPU seconds between two samples: the worker's, its database backends'."""
    spent = {pid: cpu - first.get(pid, 0.0) for pid, cpu in last.items()}
    return spent.pop(worker, 0.0), sum(spent.values())


def run_once(workdir: Path, dsn: str, channel: Any, ordered: bool, subjects: int,
             updates: int, rest: str | None, round_no: int
             ) -> tuple[float, float, float, dict[str, float]]:
    """The rate (messages/s), the CPU microseconds per message of the worker and of its
    PostgreSQL backends, and the outcomes at the end."""
    route = _routes(ordered, rest, round_no)[0]["name"]
    config = workdir / f"{route}.yaml"
    application = f"{route}-{uuid.uuid4().hex[:8]}"
    config.write_text(yaml.safe_dump({
        "broker": {"url": URL, "prefetch": 200}, "ops": {"port": "${SB_OPS_PORT:-0}"},
        "store": {"kind": "postgres", "dsn": f"{dsn}&application_name={application}",
                  "pool_size": 8},
        "routes": _routes(ordered, rest, round_no)}))
    apply_topology(config)
    total = subjects * updates
    _publish(channel, _events(route, subjects, updates))
    port = free_port()
    server = Served([sys.executable, "-m", "middleware", "run", "-c", str(config), "--role",
                     "worker", "--log-format", "json"], port, env={"SB_OPS_PORT": str(port)},
                    log=workdir / f"{route}.log")
    try:
        first = last = None
        outcomes: dict[str, float] = {}
        cpu: dict[int, float] = {}
        worker = database = 0.0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            server.check_alive()  # a dead worker fails the run now, with its log
            outcomes = _outcomes(port, route)
            count = outcomes.get("delivered", 0.0) + outcomes.get("stale", 0.0)
            now = time.monotonic()
            if count > 0 and first is None:
                first, cpu = (now, count), _cpus(server.pid, application)
            if count >= total:
                last = (now, count)
                worker, database = _spent(cpu, _cpus(server.pid, application), server.pid)
                break
            time.sleep(0.05)
        if first is None or last is None:
            raise RuntimeError(f"{route}: not done within 600 s")
        counted = max(1.0, last[1] - first[1])
        return (counted / max(1e-6, last[0] - first[0]), worker / counted * 1e6,
                database / counted * 1e6, outcomes)
    finally:
        server.stop()
        for name in (queue_name(route), dlq_name(route), hold_name(route),
                     *(retry_name(route, n) for n in range(1, 6))):
            channel.queue_delete(name)
        channel.queue_purge(OUT)


def _rest_server() -> ServerThread:
    async def accept(_request: Request) -> Response:
        return Response(b'{"ok":true}', media_type="application/json")

    app = Starlette(routes=[Route("/api/customers/{no}", accept, methods=["PUT"])])
    server = ServerThread(app, "127.0.0.1", 0, "bench-target")
    server.start_and_wait()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=2000)
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--target", choices=("amqp", "rest"), default="amqp",
                        help="amqp: an exchange (cheapest); rest: a loopback HTTP server "
                        "answering 200 in this process")
    parser.add_argument("--no-target", action="store_true",
                        help="report the ratio without enforcing its target (a smoke run: too "
                        "short, on a loaded machine); every message must still be done")
    args = parser.parse_args(argv)
    server = _rest_server() if args.target == "rest" else None
    rest = None if server is None else f"http://127.0.0.1:{server.port}"
    schema = f"bench_order_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"'.encode())
    separator = "&" if "?" in PG_DSN else "?"
    dsn = f"{PG_DSN}{separator}options={quote(f'-csearch_path={schema}')}"
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.exchange_declare(OUT, "topic", durable=True)
    channel.queue_declare(OUT, durable=True)
    channel.queue_bind(OUT, OUT, "#")
    rates: dict[str, list[float]] = {"unordered": [], "ordered": []}
    cpu: dict[str, list[tuple[float, float]]] = {"unordered": [], "ordered": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for round_no in range(args.rounds):
                for ordered in (False, True):
                    rate, worker, database, outcomes = run_once(
                        Path(tmp), dsn, channel, ordered, args.subjects, args.updates, rest,
                        round_no)
                    label = "ordered" if ordered else "unordered"
                    rates[label].append(rate)
                    cpu[label].append((worker, database))
                    print(json.dumps({"route": label, "rate": round(rate), "cpu_us": {
                        "worker": round(worker), "database": round(database)},
                        **{o: round(n) for o, n in outcomes.items()}}), flush=True)
    finally:
        if server is not None:
            server.stop()
        channel.queue_delete(OUT)
        channel.exchange_delete(OUT)
        connection.close()
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE'.encode())
    medians = {k: statistics.median(v) for k, v in rates.items()}
    ratio = medians["ordered"] / medians["unordered"]
    print(json.dumps({"median_per_s": {k: round(v) for k, v in medians.items()},
                      "ordered_over_unordered": round(ratio, 2),
                      "median_cpu_us": {k: {"worker": round(statistics.median(w for w, _ in v)),
                                            "database": round(statistics.median(d for _, d in v))}
                                        for k, v in cpu.items()}}))
    print(f"# {machine()}; {args.subjects} subjects x {args.updates} updates, median of "
          f"{args.rounds}, {args.target} target; target ordered >= {TARGET} x unordered")
    return 0 if ratio >= TARGET or args.no_target else 1


if __name__ == "__main__":
    sys.exit(main())
