"""Several daemon processes on one config file, as replicas of a deployment.

Each replica is ``python -m middleware run -c FILE --role ROLE`` with its own ops and ingress
port, passed through the environment (the config reads ``${SB_OPS_PORT}`` and
``${SB_INGRESS_PORT}``), and its own log file. Replicas can be SIGKILLed and started again on
the same ports, as an orchestrator restarts a pod.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.e2e.conftest import free_port

__all__ = ["PORTS", "Replica"]

PORTS = {"ops": {"port": "${SB_OPS_PORT}"},
         "ingress": {"host": "127.0.0.1", "port": "${SB_INGRESS_PORT}"}}
"""Config sections that take each replica's ports from its environment."""


class Replica:
    """One daemon process of a replica set; ``start`` again after ``kill`` to restart it."""

    def __init__(self, config: Path, role: str, name: str, **env: str) -> None:
        self.config = config
        self.role = role
        self.name = name
        self.ops_port = free_port()
        self.ingress_port = free_port()
        self.log = config.parent / f"{name}.log"
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}"

    def start(self) -> Replica:
        env = {**os.environ, **self.env, "SB_OPS_PORT": str(self.ops_port),
               "SB_INGRESS_PORT": str(self.ingress_port)}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "middleware", "run", "-c", str(self.config), "--role",
                 self.role, "--log-format", "json"],
                stdout=out, stderr=subprocess.STDOUT, cwd=self.config.parent, env=env)
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, \
                self.log.read_text()[-4000:]
            try:
                if httpx.get(f"http://127.0.0.1:{self.ops_port}/readyz", timeout=1) \
                        .status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not ready in {timeout}s:\n"
                             f"{self.log.read_text()[-4000:]}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no drain, no lease release, nothing flushed (a crashed pod)."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait: the orderly stop (drain, release leases)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)
