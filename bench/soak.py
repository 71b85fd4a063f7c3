"""Soak: webhook -> route -> REST target for a long time, a fault from the catalogue every while.

One ``silobridge run --role all`` process takes HMAC-signed webhooks (deduplicated by a request
id), routes them through a quorum route queue and POSTs each to a loopback REST target, a
process of its own that records, per request, the event's subject and its sync lag (arrival
minus the envelope time: the moment the ingress received the webhook). The daemon reaches
RabbitMQ and the target through fault proxies (``tests/faults/proxy.py``) in this process,
which also sends the load: open loop, spread over sender threads, a refused request (503,
429, no answer) sent again later with the same request id, as a sender must.

Every ``--fault-every`` seconds one fault of the catalogue, in turn, for ``--fault-seconds``:
a silent broker partition, every broker connection reset, a target that never answers, a
target refusing connections, a slow link to the target (500 ms each way), a target answer cut
in the middle. After each it measures how long the sync lag took to get back under 1 s (the
first second in which every arrival had a lag under 1 s). Every 5 s it samples the daemon's
RSS, open file descriptors and threads; the RSS slope is a least-squares fit over the samples
after the warm-up: until every fault was injected once (``warm_up``), at least the first fifth.

At the end the senders stop, the harness waits for every accepted event at the target and
reports lost (accepted, never arrived) and duplicate arrivals. Exit code 1 when one was lost.

Run: .venv/bin/python -m bench.soak [--minutes 30] [--rate 500] [--fault-every 120]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import itertools
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import yaml

from bench.ingress import (
    HOOK_PATH,
    SECRET,
    URL,
    Daemon,
    Served,
    daemon_config,
    delete_route_queues,
    free_port,
    machine,
    serve_until_sigterm,
)
from bench.mapping_engine import SOURCE
from middleware.config.models import RetryPolicy
from middleware.recent import RECENT_IDS
from tests.faults.proxy import FaultProxy

__all__ = ["FAULTS", "Soak", "main", "run", "warm_up"]

SUBJECT_HEADER, STAMP_HEADER = "X-Subject", "X-Event-Time"


def serve_target(port: int) -> None:
    """The ERP stand-in: answers 200 at once; records (arrival, lag ms, subject) per request,
    handed to the harness (and cleared) on GET."""
    from starlette.types import Receive, Scope, Send

    seen: list[tuple[float, float, str]] = []
    subject_key, stamp_key = SUBJECT_HEADER.lower().encode(), STAMP_HEADER.lower().encode()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b'{"accepted": true}'
        if scope["method"] == "GET":
            body = json.dumps(seen).encode()
            seen.clear()
        else:
            more = True
            while more:
                more = (await receive()).get("more_body", False)
            headers = dict(scope["headers"])
            arrival = time.time()
            sent = datetime.fromisoformat(headers[stamp_key].decode()).timestamp()
            seen.append((arrival, (arrival - sent) * 1000, headers[subject_key].decode()))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    serve_until_sigterm(app, port, "soak-target")


# -- faults ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    name: str
    start: Callable[[FaultProxy, FaultProxy], None]  # (broker proxy, target proxy)


def _reset(proxy: FaultProxy) -> None:
    proxy.reset_all()


def _refuse(proxy: FaultProxy) -> None:
    proxy.refuse()
    proxy.reset_all()


def _cut(proxy: FaultProxy) -> None:
    proxy.cut_after(40, "downstream", "reset")


FAULTS = [
    Fault("broker partition (silent)", lambda broker, _t: broker.blackhole()),
    Fault("broker connections reset", lambda broker, _t: _reset(broker)),
    Fault("target never answers", lambda _b, target: target.blackhole()),
    Fault("target refuses connections", lambda _b, target: _refuse(target)),
    Fault("target link slow (500 ms each way)", lambda _b, target: target.latency(0.5)),
    Fault("target answer cut mid-response", lambda _b, target: _cut(target)),
]


RETRY = RetryPolicy(attempts=8, initial_delay=0.5, multiplier=2, max_delay=10)
"""The soak route's retry tiers: short delays, so faults are retried within the run."""
SETTLE_SECONDS = 30  # after the first round's last fault: its backlog drains (lag back in ~10 s)


def warm_up(minutes: float, fault_every: float, fault_seconds: float,
            ids_full: float | None = None) -> float:
    """Minutes after which the RSS slope is measured: once each fault was injected and healed
    and the recent-ids set is full (``ids_full``, the minute the senders had that many events
    accepted; None if they never had).

    Two things grow at first and stop: the route's recent-ids set fills up (100,000 ids,
    ~15 MiB, 200 s at 500 events/s), and the first time a fault holds a prefetch window of
    requests in flight, the allocators take memory they keep afterwards (Python's arenas and
    glibc's heaps are rarely given back): +12 MiB at the first "target never answers",
    0.4-1.2 MiB at each one after it, free space in glibc's heap (bench/RESULTS.md, soak). A
    slope over those steps measures a high-water mark being reached, not a leak. A leak grows
    with time or with each fault, and the faults repeat after the warm-up, so it still shows;
    the run must leave time for that: when the first round would take more than three
    quarters of it, the first fifth is used.
    """
    first_round = (len(FAULTS) * fault_every + fault_seconds + SETTLE_SECONDS) / 60
    warm = max(first_round, ids_full or 0.0)
    return minutes / 5 if warm > minutes * 3 / 4 else max(warm, minutes / 5)


# -- load -----------------------------------------------------------------------------------


class Senders:
    """Open-loop webhook load over ``threads`` threads; refused requests are sent again.

    Each thread has one request open at a time, and an accepted webhook waits for the
    broker's confirm (5-20 ms on a quorum queue here), so the threads bound the rate: four of
    them accepted only 107-179 of the 500 events/s asked (bench/RESULTS.md). One thread per
    ``PER_THREAD`` events/s asked leaves each ~60 ms per request.
    """

    PER_THREAD = 16.0

    def __init__(self, url: str, rate: float, threads: int | None = None) -> None:
        self.url, self.rate = url, rate
        threads = threads or max(4, round(rate / self.PER_THREAD))
        self.accepted: set[str] = set()
        self.refused = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n, threads), daemon=True)
                         for n in range(threads)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 120) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def _run(self, index: int, of: int) -> None:
        rate = self.rate / of
        pending: list[str] = []
        numbers = itertools.count()
        began = time.monotonic()
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set() or pending:
                n = next(numbers)
                if self._stop.is_set() or (pending and n % 4 == 0):
                    key = pending.pop(0)
                else:
                    key = f"S{index}-{n}"
                if not self._send(client, key):
                    pending.append(key)
                    if self._stop.is_set():
                        time.sleep(0.1)
                time.sleep(max(0.0, began + n / rate - time.monotonic()))

    def _send(self, client: httpx.Client, key: str) -> bool:
        body = orjson.dumps({**SOURCE, "opportunity_id": key})
        digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        try:
            status = client.post(self.url, content=body, headers={
                "Content-Type": "application/json", "X-Signature": f"sha256={digest}",
                "X-Request-Id": key}).status_code
        except httpx.HTTPError:
            status = 0
        with self._lock:
            if status == 202:
                self.accepted.add(key)
                return True
            self.refused += 1
        return False


# -- the run --------------------------------------------------------------------------------


@dataclass
class Soak:
    """What a run measured."""

    minutes: float
    rate: float
    accepted: int = 0
    refused: int = 0
    arrivals: int = 0
    lost: int = 0
    duplicates: int = 0
    faults: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, float]] = field(default_factory=list)
    warm_up_minutes: float = 0.0
    ids_full_minute: float | None = None  # when the recent-ids set was full; None: never
    rss_slope_mib_per_min: float = 0.0
    rss_slope_after_first_fifth: float = 0.0  # the warm-up before the first round counted
    drain_seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """Figures; RSS, fds and threads as [after the warm-up, highest after it, at the end]."""
        warm = [s for s in self.samples if s["minute"] >= self.warm_up_minutes] or self.samples
        first, last = warm[0], warm[-1]
        worst = max((f["lag_recovered_s"] or float("inf") for f in self.faults), default=0.0)
        return {
            "minutes": self.minutes, "rate": self.rate, "accepted": self.accepted,
            "refused_and_resent": self.refused, "arrivals": self.arrivals, "lost": self.lost,
            "duplicates": self.duplicates, "faults": len(self.faults),
            "worst_lag_recovery_s": worst, "recent_ids_full_at_min": self.ids_full_minute,
            "warm_up_minutes": self.warm_up_minutes,
            "rss_slope_mib_per_min": self.rss_slope_mib_per_min,
            "rss_slope_after_first_fifth": self.rss_slope_after_first_fifth,
            "rss_mib": [first["rss_mib"], max(s["rss_mib"] for s in warm), last["rss_mib"]],
            "fds": [first["fds"], max(s["fds"] for s in warm), last["fds"]],
            "threads": [first["threads"], max(s["threads"] for s in warm), last["threads"]],
            "drain_seconds": self.drain_seconds,
        }


def _process(pid: int) -> dict[str, float]:
    status = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss_mib": round(int(status["VmRSS"].split()[0]) / 1024, 1),
            "fds": float(len(os.listdir(f"/proc/{pid}/fd"))),
            "threads": float(status["Threads"].strip())}


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (minute, MiB) points."""
    if len(points) < 2:
        return 0.0
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def _rss_slope(samples: list[dict[str, float]], after: float) -> float:
    """MiB per minute over the samples from minute ``after`` on."""
    return round(_slope([(s["minute"], s["rss_mib"]) for s in samples if s["minute"] >= after]),
                 3)


def _recovery(arrivals: list[tuple[float, float, str]], healed: float) -> float | None:
    """Seconds from ``healed`` (wall clock) to the first whole second after it in which every
    arrival had a lag under 1 s; None if none did."""
    buckets: dict[int, float] = {}
    for arrival, lag, _subject in arrivals:
        if arrival >= healed:
            second = int(arrival - healed)
            buckets[second] = max(buckets.get(second, 0.0), lag)
    for second in sorted(buckets):
        if buckets[second] < 1000:
            return float(second + 1)
    return None


def run(minutes: float, rate: float, fault_every: float, fault_seconds: float,
        workdir: Path, log: Callable[[str], None] = print) -> Soak:
    """One soak; the daemon, target and proxies are stopped and the queues deleted after."""
    soak = Soak(minutes, rate)
    route = f"bench-soak-{os.getpid()}"
    broker_url = urlsplit(URL)
    target_port = free_port()
    target = Served([sys.executable, "-m", "bench.soak", "--serve-target", str(target_port)],
                    target_port, log=workdir / "target.log")
    daemon: Daemon | None = None
    arrivals: list[tuple[float, float, str]] = []
    with FaultProxy(broker_url.port or 5672, broker_url.hostname or "127.0.0.1") as to_broker, \
            FaultProxy(target_port) as to_target:
        try:
            target.wait_listening()
            config, ingress, ops = daemon_config(workdir, route, {
                "type": "rest", "method": "POST", "timeout": 3, "concurrency": 16,
                "url": f"http://127.0.0.1:{to_target.port}/erp/orders",
                "headers": {SUBJECT_HEADER: "{envelope.subject}",
                            STAMP_HEADER: "{envelope.time}"}})
            document = yaml.safe_load(config.read_text())
            document["broker"].update(url=URL.replace(broker_url.netloc.split("@")[-1],
                                                      f"127.0.0.1:{to_broker.port}"),
                                      heartbeat=2, publish_timeout=3, connect_timeout=3,
                                      reconnect_max_delay=2)
            document["inbound"][0]["dedupe"] = {"header": "X-Request-Id"}
            document["retry"] = RETRY.model_dump(exclude_defaults=True)
            config.write_text(yaml.safe_dump(document, sort_keys=False))
            daemon = Daemon(config, ingress, "all", workdir / "daemon.log")
            daemon.wait_listening()
            _ready(ops)
            senders = Senders(f"http://127.0.0.1:{ingress}{HOOK_PATH}", rate)
            began = time.monotonic()
            end = began + minutes * 60
            next_fault, turn, next_sample = began + fault_every, 0, began
            senders.start()
            while time.monotonic() < end:
                now = time.monotonic()
                if now >= next_sample:
                    sample = {"minute": round((now - began) / 60, 2), **_process(daemon.pid),
                              "accepted": float(len(senders.accepted))}
                    soak.samples.append(sample)
                    next_sample += 5
                if now >= next_fault and now + fault_seconds + 5 < end:
                    fault = FAULTS[turn % len(FAULTS)]
                    turn += 1
                    log(f"{(now - began) / 60:5.1f} min  fault: {fault.name}")
                    fault.start(to_broker, to_target)
                    time.sleep(fault_seconds)
                    to_broker.heal()
                    to_target.heal()
                    soak.faults.append({"fault": fault.name, "at_min": round(
                        (now - began) / 60, 2), "healed": time.time(), "lag_recovered_s": None})
                    next_fault += fault_every
                arrivals += _read(target.port)
                time.sleep(1)
            senders.stop()
            drained = time.monotonic()
            while time.monotonic() - drained < 180:
                arrivals += _read(target.port)
                if senders.accepted <= {subject for _, _, subject in arrivals}:
                    break
                time.sleep(1)
            soak.drain_seconds = round(time.monotonic() - drained, 1)
            soak.samples.append({"minute": round((time.monotonic() - began) / 60, 2),
                                 **_process(daemon.pid)})
        finally:
            if daemon is not None:
                daemon.stop()
            target.stop()
            delete_route_queues(route, retry=RETRY)  # its 8 delay queues, not the default 5
    received = Counter(subject for _, _, subject in arrivals)
    soak.accepted, soak.refused = len(senders.accepted), senders.refused
    soak.arrivals = sum(received.values())
    soak.lost = len(senders.accepted - set(received))
    soak.duplicates = sum(n - 1 for n in received.values())
    for injected in soak.faults:
        injected["lag_recovered_s"] = _recovery(arrivals, injected.pop("healed"))
    ids_full = next((s["minute"] for s in soak.samples if s.get("accepted", 0) >= RECENT_IDS),
                    None)
    soak.ids_full_minute = ids_full
    soak.warm_up_minutes = round(warm_up(minutes, fault_every, fault_seconds, ids_full), 2)
    soak.rss_slope_mib_per_min = _rss_slope(soak.samples, soak.warm_up_minutes)
    soak.rss_slope_after_first_fifth = _rss_slope(soak.samples, minutes / 5)
    return soak


def _ready(ops: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{ops}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the daemon was not ready within {timeout:g}s")


def _read(port: int) -> list[tuple[float, float, str]]:
    return [tuple(row) for row in httpx.get(f"http://127.0.0.1:{port}/", timeout=30).json()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, default=500, help="webhooks per second")
    parser.add_argument("--fault-every", type=float, default=120, help="seconds")
    parser.add_argument("--fault-seconds", type=float, default=15)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--serve-target", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_target:
        serve_target(args.serve_target)
        return 0
    print(machine())
    with tempfile.TemporaryDirectory(prefix="soak-") as workdir:
        soak = run(args.minutes, args.rate, args.fault_every, args.fault_seconds, Path(workdir))
    result = {**soak.summary(), "per_fault": soak.faults, "samples": soak.samples}
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 1 if soak.lost else 0


if __name__ == "__main__":
    sys.exit(main())
