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
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import yaml

from bench.ingress import Served, free_port, machine
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


class Workers:
    """``processes`` worker daemons on one config and store."""

    def __init__(self, workdir: Path, store: dict[str, Any], label: str) -> None:
        self.workdir = workdir
        self.label = label
        self.store = store
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
        """Forget the delivered ids of earlier rounds, so each round starts alike."""
        if self.store.get("kind") == "postgres":
            with psycopg.connect(self.store["dsn"], autocommit=True) as conn:
                conn.execute("DROP TABLE IF EXISTS silobridge_delivered, silobridge_state,"
                             " silobridge_xref, silobridge_lease, silobridge_schema_version")
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

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers.clear()


def run_once(broker: Broker, workers: Workers, processes: int, total: int) -> float:
    """Fresh queues and an empty store, the backlog queued, then the workers timed."""
    broker.reset("quorum")
    workers.reset_store()
    done = subprocess.run([sys.executable, "-m", "middleware", "topology", "apply", "-c",
                           str(workers.config)], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"topology apply failed: {done.stderr.strip()}")
    publish("silobridge.events", EVENT_TYPE, events(total))
    workers.start(processes)
    try:
        return wait_for(broker, total, None, timeout=600)
    finally:
        workers.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", default="1,2,3",
                        help="worker process counts on the PostgreSQL store")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.processes.split(",")]
    schema = f"bench_store_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"'.encode())
    separator = "&" if "?" in PG_DSN else "?"
    dsn = f"{PG_DSN}{separator}options={quote(f'-csearch_path={schema}')}"
    broker = Broker()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            sqlite = Workers(Path(tmp), {"path": str(Path(tmp) / "store.db")}, "sqlite")
            postgres = Workers(Path(tmp), {"kind": "postgres", "dsn": dsn, "pool_size": 4},
                               "postgres")
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
    return 0 if ratio is None or ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
