"""The supervisor's command lines and the config rules of ``processes`` (no processes run here;
``tests/e2e/test_processes.py`` runs them)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from middleware.config.loader import load_config
from middleware.errors import ConfigError
from middleware.http import ServerThread
from middleware.supervisor import child_argv
from tests.ports import free_port


def test_processes_need_a_fixed_ops_port(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("ops: {port: 0}\nprocesses: {worker: 2}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert "ops.port + 1" in str(problem) and "set ops.port" in str(problem)


@pytest.mark.parametrize("count", [0, 65])
def test_processes_are_bounded(tmp_path: Path, count: int) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"processes: {{ingress: {count}}}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "processes.ingress" in str(caught.value.problems[0])


def test_child_command_lines() -> None:
    first = child_argv("c.yaml", "ingress", 9081, first=True, log_format="json",
                       log_level="info")
    assert first[:3] == [sys.executable, "-m", "middleware"]
    assert first[first.index("--child-ops-port") + 1] == "9081"
    assert "--reuse-port" in first and "--no-console" not in first
    worker = child_argv("c.yaml", "worker", 9082, first=False, log_format="json",
                        log_level="info")
    assert "--reuse-port" not in worker and "--no-console" in worker


def test_reuse_port_lets_two_servers_share_a_port_and_refuses_a_plain_holder() -> None:
    port = free_port()
    app = object()
    first = ServerThread(app, "127.0.0.1", port, "a", reuse_port=True)  # type: ignore[arg-type]
    second = ServerThread(app, "127.0.0.1", port, "b", reuse_port=True)  # type: ignore[arg-type]
    try:
        assert first.port == second.port == port
    finally:
        for server in (first, second):
            assert server._socket is not None
            server._socket.close()
    with socket.socket() as plain:  # a program without SO_REUSEPORT holds the port
        plain.bind(("127.0.0.1", port))
        plain.listen()
        with pytest.raises(OSError):
            ServerThread(app, "127.0.0.1", port, "c", reuse_port=True)  # type: ignore[arg-type]
