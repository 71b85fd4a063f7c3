"""Worker throughput on the PostgreSQL store next to SQLite, and 1, 2 and 3 worker processes.

The move is the worker benchmark's (``bench.worker``): a ~1 KB order event from the quorum route
queue, the 20-field reference mapping, the result published persistent with confirms, the source
acked after the confirm, the delivered id recorded in the store. Only the store differs:
``store.kind: sqlite`` (a file in a temporary directory) or ``store.kind: postgres`` (a schema
of its own in the PostgreSQL at ``STORE_PG_DSN``, dropped afterwards). Then 2 and 3
``silobridge run --role worker`` processes on the PostgreSQL store consume the same route queue
as competing consumers: their aggregate rate. Backlog mode: the messages are queued before the
workers start; the rate runs from the first output to the last. Variants are interleaved per
round so the machine's noise hits all alike; medians.

Run:  .venv/bin/python -m bench.store [--messages 20000] [--rounds 3] [--processes 1,2,3]
Exit code 1 when the ratio misses its target (unless ``--no-target``); a failure when a message
never arrives or a worker dies.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import yaml

from bench.ingress import Served, apply_topology, free_port, machine
from bench.mapping_engine import REFERENCE_MAPPING
from bench.worker.__main__ import (
    EVENT_TYPE,
    HERE,
    OUT_EXCHANGE,
    OUT_QUEUE,
    ROUTE,
    ROUTE_QUEUES,
    SRC_QUEUE,
    URL,
    Broker,
    events,
    publish,
    wait_for,
)

PG_DSN = os.environ.get("STORE_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
TARGET = 0.8  # PostgreSQL / SQLite, one process


def schema_dsn(schema: str) -> str:
    """``PG_DSN`` with ``schema`` first on the search_path: the store's tables land there."""
    separator = "&" if "?" in PG_DSN else "?"
    return f"{PG_DSN}{separator}options={quote(f'-csearch_path={schema}')}"


def recreate_schema(schema: str) -> None:
    """An empty schema of this name (dropped with everything in it first, if it exists)."""
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())
        conn.execute(f'CREATE SCHEMA "{schema}"'.encode())


class Workers:
    """``processes`` worker daemons on one config and store (PostgreSQL: in ``schema``)."""

    def __init__(self, workdir: Path, store: dict[str, Any], label: str,
                 schema: str | None = None) -> None:
        self.workdir = workdir
        self.label = label
        self.store = store
        self.schema = schema
        mapping = REFERENCE_MAPPING.replace(
            "mapping: bench-order\n",
            f"mapping: bench-order\nsource: {{schema: {HERE / 'files/order-source.json'}}}\n"
            f"target: {{schema: {HERE / 'files/order-target.json'}}}\n")
        (workdir / "mapping.yaml").write_text(mapping)
        self.config = workdir / f"config-{label}.yaml"
        self.config.write_text(yaml.safe_dump({
            "broker": {"url": URL, "prefetch": 2000},
            "ops": {"port": "${SB_OPS_PORT:-0}"},
            "store": store,
            "routes": [{"name": ROUTE, "bind": [EVENT_TYPE], "mapping": "mapping.yaml",
                        "target": {"type": "amqp", "exchange": OUT_EXCHANGE,
                                   "routing_key": "erp.order"}}],
        }))
        self.servers: list[Served] = []

    def reset_store(self) -> None:
        """Forget the delivered ids of earlier rounds, so each round starts alike.

        PostgreSQL: the whole schema is dropped and made again, so the next start migrates an
        empty schema. (Dropping a list of tables missed those that later migrations added: the
        next start found no schema version, re-ran the migrations, failed on a table that was
        still there, and the workers died.)"""
        if self.schema is not None:
            recreate_schema(self.schema)
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(self.store["path"] + suffix).unlink(missing_ok=True)

    def start(self, processes: int) -> None:
        """All at once, so none drains the backlog alone while the others start."""
        for n in range(processes):
            port = free_port()
            self.servers.append(Served(
                [sys.executable, "-m", "middleware", "run", "-c", str(self.config), "--role",
                 "worker", "--log-format", "json"], port, env={"SB_OPS_PORT": str(port)},
                log=self.workdir / f"{self.label}-{n}.log"))

    def checks(self) -> list[Callable[[], None]]:
        """One liveness check per running process (for ``wait_for``)."""
        return [server.check_alive for server in self.servers]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers.clear()


def run_once(broker: Broker, workers: Workers, processes: int, total: int) -> float:
    """Fresh queues and an empty store, the backlog queued, then the workers timed."""
    broker.reset("quorum")
    workers.reset_store()
    apply_topology(workers.config)
    publish("silobridge.events", EVENT_TYPE, events(total))
    workers.start(processes)
    try:
        return wait_for(broker, total, None, timeout=600, watch=workers.checks()).rate
    finally:
        workers.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", default="1,2,3",
                        help="worker process counts on the PostgreSQL store")
    parser.add_argument("--no-target", action="store_true",
                        help="report the ratio without enforcing its target (a smoke run: too "
                        "short, on a loaded machine); every message must still arrive")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.processes.split(",")]
    schema = f"bench_store_{uuid.uuid4().hex[:10]}"
    recreate_schema(schema)
    broker = Broker()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            sqlite = Workers(Path(tmp), {"path": str(Path(tmp) / "store.db")}, "sqlite")
            postgres = Workers(Path(tmp), {"kind": "postgres", "dsn": schema_dsn(schema),
                                           "pool_size": 4}, "postgres", schema)
            variants = [("sqlite", sqlite, 1), *(("postgres", postgres, n) for n in counts)]
            rates: dict[str, list[float]] = {}
            for _ in range(args.rounds):
                for kind, workers, processes in variants:
                    rate = run_once(broker, workers, processes, args.messages)
                    rates.setdefault(f"{kind} x{processes}", []).append(rate)
                    print(json.dumps({"store": kind, "processes": processes,
                                      "rate": round(rate)}), flush=True)
    finally:
        for name in (*ROUTE_QUEUES, SRC_QUEUE, OUT_QUEUE):
            broker.channel.queue_delete(name)
        broker.channel.exchange_delete(OUT_EXCHANGE)
        broker.connection.close()
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE'.encode())
    medians = {name: statistics.median(values) for name, values in rates.items()}
    ratio = medians["postgres x1"] / medians["sqlite x1"] if "postgres x1" in medians else None
    print(json.dumps({"median_per_s": {k: round(v) for k, v in medians.items()},
                      "postgres_over_sqlite": None if ratio is None else round(ratio, 2)}))
    print(f"# {machine()}; {args.messages} messages, median of {args.rounds}; target "
          f"postgres x1 >= {TARGET} x sqlite x1")
    return 0 if ratio is None or ratio >= TARGET or args.no_target else 1


if __name__ == "__main__":
    sys.exit(main())
