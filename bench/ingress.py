"""Ingress throughput: silobridge's REST ingress vs a minimal durable receiver, same run.

The ratio is taken against the durable receiver (``bench.ingress_durable``: HMAC check, JSON
parse, persistent publish confirmed before the 202, aiormq on the server's loop); a bare ASGI
app that answers 202 and stores nothing is kept as a reference row. All three servers are
Starlette apps served by ``middleware.http.ServerThread`` (the ingress's own
uvicorn settings) in a subprocess of their own, on loopback, and all get the same load from the
same generator: Debian's ``wrk`` with one thread, the same connection count and duration, POSTing
the same ~0.7 KB signed order JSON. The bare app reads the body and answers 202; silobridge
(``silobridge run --role ingress``) checks size and content type, verifies the generic HMAC
signature over the raw body, parses the JSON, builds the CloudEvents envelope and publishes it
persistent and mandatory with publisher confirms before it answers 202.

The body is fixed and signed once: the HMAC is still verified on every request. The endpoint has
no delivery-id dedupe (a generic HMAC endpoint has none by default), so every request is a new
event with a fresh envelope id, never a 200 "duplicate". Each silobridge round gets a fresh route
queue bound to the event type; after the round it must hold at least as many messages as wrk
counted 202 answers: that is the proof that every 202 is backed by a broker confirm. (A few
more is normal: requests cut off when wrk stops are stored, but wrk never counts their 202.)

Rounds alternate bare / silobridge / durable so machine noise hits all alike; the medians and
the ratios silobridge / durable and silobridge / bare are reported. The durable receiver's 202s
are counted against its stored messages the same way.

Run:  .venv/bin/python -m bench.ingress [--duration 20] [--connections 32] [--rounds 3]
Exit code 1 when a 202 is not backed by a stored message (the ratio is reported, not enforced).

The helpers here (subprocess servers, the daemon config, the wrk driver) are shared with
``bench.sync_lag`` and ``bench.memory``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pika
import pika.exceptions
import yaml

from bench.mapping_engine import SOURCE
from middleware.broker.factory import declare
from middleware.broker.topology import dlq_name, queue_name, retry_name, topology_for
from middleware.config.loader import load_config
from middleware.config.models import RetryPolicy

__all__ = [
    "BODY",
    "URL",
    "Daemon",
    "Served",
    "WrkResult",
    "apply_topology",
    "daemon_config",
    "delete_route_queues",
    "free_port",
    "log_tail",
    "machine",
    "main",
    "route_queue_names",
    "run_wrk",
    "signed_headers",
]

URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
SECRET = "bench-webhook-secret"
SECRET_ENV = "BENCH_WEBHOOK_SECRET"
SYSTEM = "benchhook"
KINDS = ("bare", "silobridge", "durable")
"""Servers per round: the bare app (a reference row), silobridge, and the durable receiver
(``bench.ingress_durable``, the baseline the ratio is taken against)."""


def event_type(route: str) -> str:
    """An event type of this route alone: other runs and the worker benchmark publish on the
    same shared events exchange, and a shared routing key would cross-feed their queues."""
    return f"{SYSTEM}.{route}.created"

HOOK_PATH = "/webhooks/bench/orders"
BODY = orjson.dumps(SOURCE)


def signed_headers(body: bytes) -> dict[str, str]:
    """The headers every generated request carries (signature over the raw body)."""
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Signature": f"sha256={digest}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def machine() -> str:
    """nproc, the CPU model and the load, for the record (the machine is shared)."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
            f"load average {load}")


# -- processes -----------------------------------------------------------------------------

def log_tail(path: Path | None, lines: int = 30) -> str:
    """The last ``lines`` lines of a process's log, for the error that reports its death."""
    if path is None:
        return "(no log kept)"
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(log {path} unreadable: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or f"(log {path} is empty)"


class Served:
    """A server subprocess listening on ``port``; ``stop`` always ends it."""

    def __init__(self, argv: list[str], port: int, env: dict[str, str] | None = None,
                 log: Path | None = None) -> None:
        self.port = port
        self.argv = argv
        self.log = log
        self._log = log.open("ab") if log is not None else None
        out = self._log if self._log is not None else subprocess.DEVNULL
        self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                        env={**os.environ, **(env or {})})

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        """Raise, with the log's tail, once the server has exited: it runs until ``stop``, so
        an exit means it died, and whoever waits on its work would otherwise wait out a
        timeout of minutes."""
        if self.process.poll() is not None:
            raise RuntimeError(f"{' '.join(self.argv[1:4])} (pid {self.pid}) exited "
                               f"with {self.process.returncode}; log {self.log}:\n"
                               f"{log_tail(self.log)}")

    def wait_listening(self, timeout: float = 60) -> None:
        """Until the socket accepts (readiness alone can come before the ingress listens)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nothing listens on 127.0.0.1:{self.port} after {timeout:g}s")

    def rss_mb(self) -> float:
        """Resident set size from /proc (VmRSS), in MiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS for pid {self.pid}")

    def stop(self, timeout: float = 30) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self._log is not None:
            self._log.close()


def serve_bare(port: int) -> None:
    """The baseline: a Starlette route that reads the body and answers 202, nothing else."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    accepted = orjson.dumps({"status": "accepted"})

    async def hook(request: Request) -> Response:
        await request.body()
        return Response(accepted, status_code=202, media_type=JSONResponse.media_type)

    serve_until_sigterm(Starlette(routes=[Route(HOOK_PATH, hook, methods=["POST"])]), port,
                        "bare")


def serve_durable(port: int, route: str) -> None:
    """The honest baseline (``bench.ingress_durable``): verify, parse, publish, confirm, 202."""
    from bench.ingress_durable import durable_app

    serve_until_sigterm(durable_app(URL, SECRET, event_type(route), HOOK_PATH), port, "durable")


def serve_until_sigterm(app: Any, port: int, name: str) -> None:
    """Serve an ASGI app on loopback under the ingress's own uvicorn settings until SIGTERM
    (the harness stops its helper processes that way)."""
    from middleware.http import ServerThread

    server = ServerThread(app, "127.0.0.1", port, name)
    server.start_and_wait()
    stopped = False

    def stop(*_: Any) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, stop)
    while not stopped and server.is_alive():
        time.sleep(0.2)
    server.stop()


def daemon_config(workdir: Path, route: str, target: dict[str, Any] | None = None,
                  mapping: str | None = None, tag: str = "") -> tuple[Path, int, int]:
    """A config with one HMAC-signed REST endpoint and one route bound to its event type.

    Returns (config file, ingress port, ops port). Without ``target`` the route only gives the
    published events a queue to land in (an ingress-only daemon never consumes it). ``tag``
    names a second config (own ports and store) for a second process of the same route.
    """
    ingress_port, ops_port = free_port(), free_port()
    route_config: dict[str, Any] = {
        "name": route, "bind": [event_type(route)],
        "target": target or {"type": "amqp", "exchange": "amq.topic", "routing_key": "unused"},
    }
    if mapping is not None:
        route_config["mapping"] = mapping
    config = {
        "broker": {"url": URL, "prefetch": 500},
        "ops": {"host": "127.0.0.1", "port": ops_port},
        "ingress": {"host": "127.0.0.1", "port": ingress_port},
        "store": {"path": str(workdir / f"{route}{tag}.db")},
        "inbound": [{
            "type": "rest", "name": f"{route}-hook", "path": HOOK_PATH, "system": SYSTEM,
            "source": "crm/bench", "batch": False,
            "derive": {"entity": {"value": route}, "action": {"value": "created"},
                       "subject": {"path": "opportunity_id"}},
            "auth": {"scheme": "hmac", "header": "X-Signature", "prefix": "sha256=",
                     "secret_env": SECRET_ENV},
        }],
        "routes": [route_config],
    }
    path = workdir / f"{route}{tag}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, ingress_port, ops_port


class Daemon(Served):
    """``silobridge run`` as a subprocess on a config from ``daemon_config``."""

    def __init__(self, config: Path, ingress_port: int, role: str, log: Path) -> None:
        super().__init__([sys.executable, "-m", "middleware", "run", "-c", str(config),
                          "--role", role, "--log-format", "json"], ingress_port,
                         env={SECRET_ENV: SECRET}, log=log)


def apply_topology(config: Path) -> None:
    """Declare the exchange and route queues of ``config`` (what ``silobridge topology apply``
    declares for them), so a backlog can be queued before the daemon starts. In this process:
    the CLI is a second interpreter start per round, seconds of CPU, most of a smoke run's."""
    loaded = load_config(config).config
    declare(loaded.broker, topology_for(loaded))


def route_queue_names(route: str, retry: RetryPolicy | None = None) -> list[str]:
    """Every queue the daemon declares for a bench route: the route queue, its DLQ and one delay
    queue per tier of its retry policy (the default, unless the config sets one)."""
    tiers = len((retry or RetryPolicy()).delays())
    return [queue_name(route), dlq_name(route),
            *(retry_name(route, n) for n in range(1, tiers + 1))]


def delete_route_queues(route: str, attempts: int = 30,
                        retry: RetryPolicy | None = None) -> None:
    """Every queue the daemon declared for the bench route (shared exchanges are kept).

    Retried for a minute: other test suites on a shared machine restart the broker."""
    for attempt in range(attempts):
        try:
            connection = pika.BlockingConnection(pika.URLParameters(URL))
            break
        except pika.exceptions.AMQPConnectionError:
            if attempt == attempts - 1:
                raise
            time.sleep(2)
    try:
        channel = connection.channel()
        for name in route_queue_names(route, retry):
            channel.queue_delete(name)
    finally:
        if connection.is_open:
            connection.close()


def queue_depth(queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        if connection.is_open:
            connection.close()


# -- the load generator --------------------------------------------------------------------

_WRK_SCRIPT = """
-- Generated by bench/ingress.py: fixed signed POST, status counts, optional open-loop pacing.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_usec; } bench_timeval;
int gettimeofday(bench_timeval *tv, void *tz);
]]
local tv = ffi.new("bench_timeval")
local function now()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) + tonumber(tv.tv_usec) / 1e6
end

wrk.method = "POST"
wrk.body = BODY
HEADERS

local stamp = STAMP
if stamp then
  -- The direct baseline of bench.sync_lag: each request carries its send time, so the target
  -- measures the same "lag" over the bare HTTP hop that it measures through silobridge.
  function request()
    ffi.C.gettimeofday(tv, nil)
    local usec = string.format(".%06d+00:00", tonumber(tv.tv_usec))
    wrk.headers[stamp] = os.date("!%Y-%m-%dT%H:%M:%S", tonumber(tv.tv_sec)) .. usec
    return wrk.format()
  end
end

local threads = {}
function setup(thread) table.insert(threads, thread) end

codes = {}
function response(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
end

local interval = INTERVAL
if interval > 0 then
  local next_at = nil
  -- Each call claims the next slot of one schedule per thread: requests leave at the rate
  -- while a connection is free, and a late schedule catches up (open loop, bounded concurrency).
  function delay()
    local t = now()
    if next_at == nil then next_at = t end
    next_at = next_at + interval
    local wait = (next_at - t) * 1000
    if wait < 0 then return 0 end
    return wait
  end
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("codes")) do
      merged[tostring(status)] = (merged[tostring(status)] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(merged) do table.insert(parts, string.format('"%s": %d', status, n)) end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "errors": %d, "codes": {%s}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect + e.read + e.write + e.timeout, table.concat(parts, ", ")))
end
"""


@dataclass
class WrkResult:
    """One wrk run: answers per status code, client-side latency percentiles (ms)."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    codes: dict[int, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def run_wrk(url: str, *, connections: int, duration: float, rate: float | None = None,
            stamp_header: str | None = None, timeout: float = 10) -> WrkResult:
    """POST the signed body to ``url`` for ``duration`` seconds (optionally at ``rate`` /s,
    optionally with the send time, ISO 8601, in ``stamp_header``)."""
    headers = "\n".join(f'wrk.headers["{name}"] = "{value}"'
                        for name, value in signed_headers(BODY).items())
    script = (_WRK_SCRIPT.replace("BODY", json.dumps(BODY.decode(), ensure_ascii=False))
              .replace("HEADERS", headers)
              .replace("INTERVAL", repr(1 / rate if rate else 0.0))
              .replace("STAMP", json.dumps(stamp_header) if stamp_header else "nil"))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
        file.write(script)
    try:
        done = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s",
             f"--timeout={timeout:g}s", "-s", file.name, url],
            capture_output=True, text=True, timeout=duration + 60, check=True)
    finally:
        os.unlink(file.name)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    return WrkResult(raw["requests"], raw["duration_us"] / 1e6, raw["p50_us"] / 1e3,
                     raw["p99_us"] / 1e3, raw["max_us"] / 1e3, raw["errors"],
                     {int(k): v for k, v in raw["codes"].items()})


# -- the benchmark -------------------------------------------------------------------------

def _round(kind: str, workdir: Path, args: argparse.Namespace, route: str) -> dict[str, Any]:
    port = free_port()
    if kind == "bare":
        server = Served([sys.executable, "-m", "bench.ingress", "--serve-bare", str(port)],
                        port, log=workdir / "bare.log")
    elif kind == "durable":
        server = Served([sys.executable, "-m", "bench.ingress", "--serve-durable", str(port),
                         route], port, log=workdir / "durable.log")
    else:
        config, port, _ops = daemon_config(workdir, route)
        server = Daemon(config, port, "ingress", workdir / "daemon.log")
    try:
        server.wait_listening()
        url = f"http://127.0.0.1:{port}{HOOK_PATH}"
        run_wrk(url, connections=args.connections, duration=args.warmup)  # warm up
        before = 0
        if kind != "bare":
            time.sleep(1)  # requests cut off at the warm-up's end may still be publishing
            before = queue_depth(queue_name(route))
        result = run_wrk(url, connections=args.connections, duration=args.duration)
    finally:
        server.stop()  # drains: requests cut off at wrk's end finish publishing first
    accepted = result.codes.get(202, 0)
    row: dict[str, Any] = {"server": kind, "req_s": round(result.rate),
                           "p50_ms": round(result.p50_ms, 2), "p99_ms": round(result.p99_ms, 2),
                           "accepted": accepted, "other": result.requests - accepted,
                           "codes": {str(k): v for k, v in sorted(result.codes.items())},
                           "errors": result.errors}
    if kind != "bare":
        row["stored"] = queue_depth(queue_name(route)) - before
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of warm-up per server")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--serve-durable", nargs=2, metavar=("PORT", "ROUTE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return 0
    if args.serve_durable:
        serve_durable(int(args.serve_durable[0]), args.serve_durable[1])
        return 0
    rows: list[dict[str, Any]] = []
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-ingress-") as tmp:
        for n in range(max(1, min(args.rounds, 20))):
            route = f"bench-ingress-{os.getpid()}-{n}"  # a fresh route queue per round
            try:
                # silobridge first: its topology declares the route queue the durable
                # receiver publishes into
                for kind in KINDS:
                    row = _round(kind, Path(tmp), args, route)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    # Every 202 must be stored: stored >= accepted. More may be stored: requests
                    # cut off at wrk's end (stored, their 202 never counted), and a 503 whose
                    # message the broker confirmed after the publish timeout.
                    if kind != "bare" and row["stored"] < row["accepted"]:
                        ok = False
                        print(f"# NOT BACKED ({kind}): {row['accepted']} answers 202, "
                              f"{row['stored']} messages stored", flush=True)
            finally:
                delete_route_queues(route)
    summary: dict[str, Any] = {}
    for kind in KINDS:
        mine = [r for r in rows if r["server"] == kind]
        summary[kind] = {key: statistics.median(r[key] for r in mine)
                         for key in ("req_s", "p50_ms", "p99_ms")}
    summary["ratio_durable"] = round(
        summary["silobridge"]["req_s"] / summary["durable"]["req_s"], 2)
    summary["ratio_bare"] = round(summary["silobridge"]["req_s"] / summary["bare"]["req_s"], 2)
    summary["every_202_stored"] = ok
    print(json.dumps(summary), flush=True)
    print(f"# {machine()}; wrk -t1 -c{args.connections} -d{args.duration:g}s, median of "
          f"{len(rows) // len(KINDS)} rounds", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
