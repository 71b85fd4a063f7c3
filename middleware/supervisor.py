"""Several daemon processes from one command: ``processes: {ingress: M, worker: N}``.

One Python process runs one pika I/O loop and one ingress event loop, and the GIL keeps it on
about one core. A container that should use more cores, or a machine without an orchestrator,
gets them from here: ``silobridge run`` starts M ``--role ingress`` and N ``--role worker``
processes of the same config and watches them. Orchestrators that scale replicas themselves
(compose ``deploy.replicas``, a Kubernetes Deployment) need none of this; the processes behave
exactly as such replicas do (competing consumers, shared store, leases for pollers).

- The ingress processes share the ingress port through SO_REUSEPORT: the kernel spreads
  connections over them, with no proxy and no hand-over between processes.
- Each process serves its own ops endpoints on ``ops.port + 1 + i``; the supervisor serves
  ``ops.port``: ``/healthz``, ``/readyz`` (ready when every process is; the JSON names each with
  its pid, ops port and restarts) and ``/metrics`` (its restarts counter; each process's own
  metrics are scraped on its own port).
- A process that dies (the watchdog's exit 3, a crash, a kill) is started again with a backoff
  that doubles from 1 s to 30 s, and resets once the process has run for a minute.
- SIGTERM/SIGINT stop every process (each drains within ``shutdown_grace``) and the supervisor
  exits 0 when all of them did; SIGHUP is passed on (mapping reload).
- The admin console runs in the first ingress process only (a console port cannot be shared).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import httpx
import structlog
from prometheus_client import Counter

from middleware.config.models import Config
from middleware.health import ops_app
from middleware.http import ServerThread

__all__ = ["Supervisor", "child_argv"]

log = structlog.get_logger(__name__)

RESTARTS = Counter("silobridge_process_restarts", "Processes the supervisor started again "
                   "after they ended on their own.", ["role"])

_MAX_BACKOFF = 30.0
_STABLE_AFTER = 60.0


def child_argv(config: str, role: str, ops_port: int, *, first: bool, log_format: str,
               log_level: str) -> list[str]:
    """The command line of one supervised process (``run`` with its hidden child options)."""
    argv = [sys.executable, "-m", "middleware", "run", "-c", config, "--role", role,
            "--log-format", log_format, "--log-level", log_level, "--child-ops-port",
            str(ops_port)]
    if role == "ingress":
        argv.append("--reuse-port")
    if not first:
        argv.append("--no-console")
    return argv


@dataclass
class _Child:
    role: str
    index: int
    argv: list[str]
    ops_port: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    backoff: float = 1.0
    due: float = 0.0
    ready: bool = False
    exit_codes: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}"

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv)
        self.started = time.monotonic()
        log.info("process started", process=self.name, pid=self.process.pid,
                 ops_port=self.ops_port)


class Supervisor:
    """Starts, watches and stops the processes; ``run`` returns the exit code."""

    def __init__(self, config: Config, config_path: str, roles: tuple[str, ...], *,
                 log_format: str, log_level: str) -> None:
        self.config = config
        counts = {"ingress": config.processes.ingress, "worker": config.processes.worker}
        self.children: list[_Child] = []
        port = config.ops.port
        for role in roles:
            for index in range(counts[role]):
                port += 1
                argv = child_argv(config_path, role, port, first=not self.children,
                                  log_format=log_format, log_level=log_level)
                self.children.append(_Child(role, index, argv, port))
        self.stopping = threading.Event()
        self.ops = ServerThread(ops_app(self._checks, reasons=self._reasons), config.ops.host,
                                config.ops.port, "supervisor-ops", tls=config.ops.tls,
                                limits=config.ingress.http)

    def _checks(self) -> dict[str, bool]:
        return {child.name: child.ready for child in self.children}

    def _reasons(self) -> dict[str, str]:
        return {child.name: (f"pid {child.process.pid if child.process else '-'}, ops port "
                             f"{child.ops_port}, restarts {child.restarts}")
                for child in self.children}

    def run(self) -> int:
        self.ops.start_and_wait()
        for child in self.children:
            child.start()
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        signal.signal(signal.SIGHUP, lambda *_: self._signal_all(signal.SIGHUP))
        # the processes serve ops like the supervisor (HTTPS when ops.tls is set); the probe
        # only reads their readiness over loopback, so it does not check their certificate
        with httpx.Client(timeout=1.0, verify=False) as probe:
            while not self.stopping.wait(0.5):
                for child in self.children:
                    self._watch(child, probe)
        return self._stop()

    def _watch(self, child: _Child, probe: httpx.Client) -> None:
        now = time.monotonic()
        if child.process is None:  # waiting out its backoff
            if now >= child.due:
                child.start()
            return
        code = child.process.poll()
        if code is None:
            child.ready = _ready(probe, self._probe_url(child.ops_port))
            if now - child.started > _STABLE_AFTER:
                child.backoff = 1.0
            return
        child.ready = False
        child.exit_codes.append(code)
        child.restarts += 1
        RESTARTS.labels(child.role).inc()
        child.due = now + child.backoff
        log.error("process ended; starting it again", process=child.name,
                  pid=child.process.pid, exit_code=code, after_seconds=round(child.backoff, 1))
        child.backoff = min(child.backoff * 2, _MAX_BACKOFF)
        child.process = None

    def _probe_url(self, port: int) -> str:
        host = self.config.ops.host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else host
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        scheme = "https" if self.config.ops.tls is not None else "http"
        return f"{scheme}://{host}:{port}/readyz"

    def _signal_all(self, signum: int) -> None:
        for child in self.children:
            if child.process is not None and child.process.poll() is None:
                child.process.send_signal(signum)

    def _stop(self) -> int:
        """SIGTERM to all, wait for their drains, kill what outlives the grace; 0 if all were 0."""
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.config.shutdown_grace + 15
        codes = []
        for child in self.children:
            if child.process is None:
                continue
            try:
                codes.append(child.process.wait(max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                log.error("process did not stop in time; killed", process=child.name)
                child.process.kill()
                codes.append(child.process.wait())
        self.ops.stop()
        log.info("supervisor stopped", exit_codes=codes)
        return 0 if all(code == 0 for code in codes) else 1


def _ready(probe: httpx.Client, url: str) -> bool:
    try:
        return probe.get(url).status_code == 200
    except httpx.HTTPError:
        return False
