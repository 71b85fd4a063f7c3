"""Sync lag: webhook received -> target accepted, through one silobridge process, at fixed rates.

One ``silobridge run --role all`` process takes signed webhooks on its REST ingress (generic
HMAC, confirmed publish, 202), routes them through a quorum route queue, applies the 20-field
reference mapping of ``bench.mapping_engine`` and POSTs the result to a loopback REST target.
The target is a bare ASGI app under uvicorn in its own process that answers at once (the
direct baseline shows a p99 of about 1 ms) and records, per request, its arrival time minus
the envelope time, which it reads from a header the route's target template fills with
``{envelope.time}``. The endpoint derives no event
time from the payload, so the envelope time is the moment the ingress received the webhook: the
recorded value is exactly "webhook received -> target accepted". Both ends read the same clock.

Load is open loop: ``wrk`` paced by a Lua schedule at each rate (200, 1,000, 3,000 events/s by
default) for a fixed duration, with enough connections that the schedule, not the answers,
sets the pace. After each rate the harness waits until the target has every accepted event.

``--split`` runs the same config as two processes on the same machine, ``--role ingress`` and
``--role worker``, so the HTTP ingress and the delivering worker each get a GIL (and a core).

Each silobridge row also gives the CPU microseconds per delivered event that every process on
the path spent (silobridge or ingress and worker, the target, RabbitMQ, wrk): on a 2-vCPU
machine their sum says which rates the machine can carry at all.

Baseline in the same run: the same generator at the same rate straight to the target, each
request stamped with its send time, measures what the bare HTTP hop and the target add by
themselves; what silobridge adds is the difference.

Run:  .venv/bin/python -m bench.sync_lag [--rates 200,1000,3000] [--duration 30]
Exit code 1 when an accepted event never reached the target.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.ingress import (
    HOOK_PATH,
    Daemon,
    Served,
    WrkResult,
    daemon_config,
    delete_route_queues,
    free_port,
    machine,
    run_wrk,
    serve_until_sigterm,
)
from bench.mapping_engine import REFERENCE_MAPPING
from bench.procs import broker_pid, cpu_seconds

__all__ = ["Harness", "LagStats", "lag_stats", "main"]

STAMP_HEADER = "X-Event-Time"
TARGET_PATH = "/erp/orders"
MAX_SAMPLES = 2_000_000  # the target keeps at most this many lags between two reads


def serve_target(port: int) -> None:
    """The ERP stand-in: answers 200 at once and records arrival - X-Event-Time (ms)."""
    from starlette.types import Receive, Scope, Send

    lags: list[float] = []
    stamp = STAMP_HEADER.lower().encode()
    answer = b'{"accepted": true}'

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "GET":  # the harness reads and clears the recorded lags
            body = json.dumps(lags).encode()
            lags.clear()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        arrival = time.time()
        sent = next((v for k, v in scope["headers"] if k == stamp), None)
        if sent is not None and len(lags) < MAX_SAMPLES:
            lags.append((arrival - datetime.fromisoformat(sent.decode()).timestamp()) * 1000)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": answer})

    serve_until_sigterm(app, port, "target")


@dataclass
class LagStats:
    count: int
    p50: float
    p95: float
    p99: float
    max: float

    def row(self) -> dict[str, float]:
        return {"p50_ms": round(self.p50, 1), "p95_ms": round(self.p95, 1),
                "p99_ms": round(self.p99, 1), "max_ms": round(self.max, 1)}


def lag_stats(lags: list[float]) -> LagStats:
    """Nearest-rank percentiles (no interpolation: every figure is a measured lag)."""
    if not lags:
        return LagStats(0, float("nan"), float("nan"), float("nan"), float("nan"))
    ordered = sorted(lags)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return LagStats(len(ordered), rank(0.50), rank(0.95), rank(0.99), ordered[-1])


class Harness:
    """Target + daemon (role all) wired for lag measurement; a context manager that always
    stops both processes and deletes the route's queues."""

    def __init__(self, workdir: Path, connections: int, split: bool = False) -> None:
        self.workdir = workdir
        self.connections = connections
        self.split = split
        self.route = f"bench-lag-{os.getpid()}"
        self.target: Served | None = None
        self.daemon: Daemon | None = None  # the process taking the webhooks
        self.worker: Daemon | None = None  # with split: the process delivering them

    def __enter__(self) -> Harness:
        try:
            port = free_port()
            self.target = Served([sys.executable, "-m", "bench.sync_lag", "--serve-target",
                                  str(port)], port, log=self.workdir / "target.log")
            self.target.wait_listening()
            self.target_url = f"http://127.0.0.1:{port}"
            (self.workdir / "mapping.yaml").write_text(REFERENCE_MAPPING)
            target = {"type": "rest", "method": "POST", "url": self.target_url + TARGET_PATH,
                      "headers": {STAMP_HEADER: "{envelope.time}"}, "timeout": 5,
                      "concurrency": 16}
            config, ingress, _ops = daemon_config(self.workdir, self.route, target,
                                                  "mapping.yaml")
            if self.split:
                second, _, ops = daemon_config(self.workdir, self.route, target, "mapping.yaml",
                                               tag="-worker")
                self.worker = Daemon(second, ops, "worker", self.workdir / "worker.log")
                self.worker.wait_listening()  # its ops port: it runs
            role = "ingress" if self.split else "all"
            self.daemon = Daemon(config, ingress, role, self.workdir / "daemon.log")
            self.daemon.wait_listening()
            self.hook_url = f"http://127.0.0.1:{ingress}{HOOK_PATH}"
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        for server in (self.daemon, self.worker, self.target):
            if server is not None:
                server.stop()
        delete_route_queues(self.route)

    def lags(self) -> list[float]:
        """The lags recorded since the last call (and clears them)."""
        return list(httpx.get(self.target_url + "/lags", timeout=30).json())

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of each process on the path (wrk: of the waited-for children,
        which are only the wrk runs)."""
        pids = {"ingress" if self.split else "silobridge": self.daemon,
                "worker": self.worker, "target": self.target}
        spent = {name: cpu_seconds(server.pid) for name, server in pids.items()
                 if server is not None}
        broker = broker_pid()
        if broker is not None:
            spent["rabbitmq"] = cpu_seconds(broker)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        spent["wrk"] = children.ru_utime + children.ru_stime
        return spent

    def run(self, rate: float, duration: float, *, direct: bool = False,
            drain_timeout: float = 120) -> tuple[WrkResult, list[float], float]:
        """Open-loop load for ``duration`` s; then every accepted event's lag (or a timeout),
        and the seconds from the start of the load to the last arrival."""
        self.lags()  # start clean
        started = time.monotonic()
        if direct:
            result = run_wrk(self.target_url + TARGET_PATH, connections=self.connections,
                             duration=duration, rate=rate, stamp_header=STAMP_HEADER)
            return result, self.lags(), result.seconds
        result = run_wrk(self.hook_url, connections=self.connections, duration=duration,
                         rate=rate)
        expected = result.codes.get(202, 0)
        lags: list[float] = []
        last = time.monotonic()
        deadline = time.monotonic() + drain_timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            fresh = self.lags()
            lags += fresh
            now = time.monotonic()
            if fresh:
                quiet_since = last = now
            # all accepted events arrived, and those cut off at wrk's end had time to follow
            if len(lags) >= expected and now - quiet_since > 1.0:
                break
            time.sleep(0.25)
        return result, lags, last - started


def _row(kind: str, rate: float, result: WrkResult, lags: list[float],
         seconds: float) -> dict[str, Any]:
    """``delivered_per_s``: all deliveries over the time from the load's start to the last one
    (below ``sent_per_s`` when a backlog built up and drained after the load)."""
    stats = lag_stats(lags)
    accepted = result.codes.get(200 if kind == "direct" else 202, 0)
    return {"path": kind, "rate": rate, "sent_per_s": round(result.rate),
            "delivered": stats.count, "accepted": accepted,
            "delivered_per_s": round(stats.count / max(seconds, result.seconds)), **stats.row(),
            "http_p99_ms": round(result.p99_ms, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="200,1000,3000", help="events/s, comma-separated")
    parser.add_argument("--duration", type=float, default=30, help="seconds per rate")
    parser.add_argument("--warmup", type=float, default=3,
                        help="seconds of load at 200/s before the first rate (connections, "
                        "mapping, first deliveries)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--no-direct", action="store_true", help="skip the direct baseline")
    parser.add_argument("--split", action="store_true",
                        help="ingress and worker as two processes (default: one, role all)")
    parser.add_argument("--serve-target", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_target:
        serve_target(args.serve_target)
        return 0
    rates = [float(r) for r in args.rates.split(",") if r.strip()][:10]
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-lag-") as tmp, \
            Harness(Path(tmp), args.connections, args.split) as harness:
        harness.run(200, args.warmup)
        for rate in rates:
            if not args.no_direct:
                result, lags, seconds = harness.run(rate, args.duration, direct=True)
                print(json.dumps(_row("direct", rate, result, lags, seconds)), flush=True)
            before = harness.cpu()
            result, lags, seconds = harness.run(rate, args.duration)
            row = _row("silobridge", rate, result, lags, seconds)
            after = harness.cpu()
            row["cpu_us_per_event"] = {
                name: round((after[name] - before[name]) / max(1, len(lags)) * 1e6)
                for name in after if name in before}
            print(json.dumps(row), flush=True)
            if row["delivered"] < row["accepted"]:
                ok = False
                print(f"# {row['accepted'] - row['delivered']} accepted events not delivered "
                      f"within the drain timeout", flush=True)
    processes = "ingress + worker processes" if args.split else "one process (role all)"
    print(f"# {machine()}; silobridge as {processes}; wrk -t1 -c{args.connections}, "
          f"{args.duration:g}s per rate; "
          f"target p99 < 100 ms at 1,000 events/s", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
