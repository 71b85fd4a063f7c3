"""The daemon as a real subprocess: started from a config file, probed over its ops port."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pika
import pytest
import yaml

from middleware.broker.topology import dlq_name, queue_name, retry_name
from tests.ports import free_port


class DaemonProcess:
    def __init__(self, config: Path, ops_port: int, log: Path) -> None:
        self.config = config
        self.ops_port = ops_port
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "middleware", "run", "-c", str(self.config),
                 "--log-format", "json", *extra],
                stdout=out, stderr=subprocess.STDOUT, cwd=self.config.parent,
            )

    def topology_apply(self) -> None:
        """Declare the queues first, so a backlog can be published before the daemon runs."""
        subprocess.run([sys.executable, "-m", "middleware", "topology", "apply", "-c",
                        str(self.config)], check=True, capture_output=True, timeout=60)

    def ready(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.ops_port}/readyz", timeout=1).status_code \
                == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.log.read_text()
            if self.ready():
                return
            time.sleep(0.1)
        raise AssertionError(f"daemon not ready in {timeout}s:\n{self.log.read_text()}")

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.ops_port}/metrics", timeout=5).text


@pytest.fixture
def daemon_process(
    amqp_url: str, tmp_path: Path
) -> Iterator[Callable[[list[dict[str, Any]]], DaemonProcess]]:
    """Write a config with the given routes and return an (unstarted) daemon for it."""
    made: list[tuple[DaemonProcess, list[str]]] = []

    def make(routes: list[dict[str, Any]], **sections: Any) -> DaemonProcess:
        ops_port = free_port()
        document = {
            "broker": {"url": amqp_url, "prefetch": 100},
            "ops": {"port": ops_port},
            "ingress": {"port": free_port()},
            "store": {"path": str(tmp_path / "store.db")},
            "retry": {"attempts": 2, "initial_delay": 0.5, "multiplier": 2},
            "shutdown_grace": 10,
            "routes": routes,
            **sections,
        }
        config = tmp_path / "silobridge.yaml"
        config.write_text(yaml.safe_dump(document))
        daemon = DaemonProcess(config, ops_port, tmp_path / "daemon.log")
        queues = []
        for route in routes:
            queues += [queue_name(route["name"]), dlq_name(route["name"]),
                       retry_name(route["name"], 1), retry_name(route["name"], 2)]
        made.append((daemon, queues))
        return daemon

    yield make
    for daemon, queues in made:
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.process.send_signal(signal.SIGKILL)
            daemon.process.wait(10)
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        channel = connection.channel()
        for name in queues:
            channel.queue_delete(name)
        connection.close()



@pytest.fixture
def out_queue(amqp_url: str, prefix: str) -> Iterator[str]:
    """The queue an AMQP target of the test fills (the target declares it); removed after."""
    yield f"{prefix}.out"
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.queue_delete(f"{prefix}.out")
    channel.exchange_delete(f"{prefix}.out")
    connection.close()
