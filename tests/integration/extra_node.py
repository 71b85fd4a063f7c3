"""Extra RabbitMQ nodes on this machine, for tests that must configure the broker themselves.

The machine's own node (``rabbit@localhost`` on 5672, configured in /etc/rabbitmq) is shared by
every engineer and must stay untouched, so a test that needs a TLS listener, or later a cluster,
starts a node of its own: its own name (``sbtest-<hex>@localhost``), its own ports (AMQP, AMQPS,
Erlang distribution; all on 127.0.0.1, management off), its own config file, and data, log and pid
files under a directory the test owns. Everything is passed through ``RABBITMQ_*`` variables,
including ``RABBITMQ_CONF_ENV_FILE`` so that /etc/rabbitmq/rabbitmq-env.conf (which names the
machine's node) is not read. The scripts are called from /usr/lib/rabbitmq/bin, not through
the Debian wrappers in /usr/sbin, which would switch to the ``rabbitmq`` user and overwrite the
machine node's startup log. Nodes share the Erlang cookie of the user running the tests
(``~/.erlang.cookie``), so ``ctl("join_cluster", other.name)`` works between them.

Teardown is meant to survive anything: ``stop`` falls back to ``kill -9``; every started node
is also killed at interpreter exit; and a tiny watcher process kills the node when the test
process is gone, even after a ``kill -9`` of pytest itself.

    with ExtraNode(tmp_path, tls=NodeTls(ca, cert, key)) as node:
        node.url, node.tls_url, node.ctl("list_connections", "name", "ssl")
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest

from tests.ports import free_port

__all__ = ["ExtraCluster", "ExtraNode", "NodeError", "NodeTls", "require_node_tools"]

BIN_DIR = Path("/usr/lib/rabbitmq/bin")
"""The real scripts (Debian); elsewhere the ones on PATH are used."""

_RUNNING: dict[str, ExtraNode] = {}


class NodeError(RuntimeError):
    """A node did not start, stop or answer; the message carries the end of its log."""


@dataclass(frozen=True)
class NodeTls:
    """PEM files of the node's TLS listener; ``require_client_cert`` turns on mutual TLS."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    require_client_cert: bool = False

    def conf_lines(self, port: int) -> list[str]:
        verify = "verify_peer" if self.require_client_cert else "verify_none"
        return [
            f"listeners.ssl.default = 127.0.0.1:{port}",
            f"ssl_options.cacertfile = {self.ca_file}",
            f"ssl_options.certfile = {self.cert_file}",
            f"ssl_options.keyfile = {self.key_file}",
            "ssl_options.versions.1 = tlsv1.3",
            "ssl_options.versions.2 = tlsv1.2",
            f"ssl_options.verify = {verify}",
            f"ssl_options.fail_if_no_peer_cert = {str(self.require_client_cert).lower()}",
        ]


def _script(name: str) -> str | None:
    if (BIN_DIR / name).is_file():
        return str(BIN_DIR / name)
    return shutil.which(name)


def require_node_tools() -> None:
    """Skip locally, fail under CI, when this machine cannot run a RabbitMQ node."""
    missing = [name for name in ("rabbitmq-server", "rabbitmqctl") if _script(name) is None]
    if missing:
        message = f"cannot start an extra RabbitMQ node: {', '.join(missing)} not installed"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set: broker tests must run)")
        pytest.skip(message)


class ExtraNode:
    """One RabbitMQ node of a test; ``start`` may be called again after ``stop`` or ``kill``."""

    def __init__(
        self, base_dir: Path, *, tls: NodeTls | None = None, extra_conf: tuple[str, ...] = (),
        erl_args: tuple[str, ...] = (),
    ) -> None:
        self.short = f"sbtest-{uuid.uuid4().hex[:8]}"
        self.name = f"{self.short}@localhost"
        self.dir = base_dir / self.short
        self.amqp_port = free_port()
        self.amqps_port = free_port() if tls is not None else None
        self.dist_port = free_port()
        self.tls = tls
        self._extra_conf = extra_conf
        # settings rabbitmq.conf has no key for, e.g. ("-rabbit", "channel_tick_interval", "500")
        self._erl_args = erl_args
        self.start_seconds: float | None = None
        self._watcher: subprocess.Popen[bytes] | None = None

    # -- addresses ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"

    def tls_url(self, host: str = "localhost") -> str:
        if self.amqps_port is None:
            raise NodeError(f"{self.name} has no TLS listener (give tls= when creating it)")
        return f"amqps://guest:guest@{host}:{self.amqps_port}/%2F"

    # -- life cycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 120) -> float:
        """Start the node detached and wait until it runs; returns the seconds it took."""
        began = time.monotonic()
        self._write_files()
        (self.dir / "node.pid").unlink(missing_ok=True)  # a killed node leaves its pid behind
        server = _script("rabbitmq-server")
        assert server is not None, "call require_node_tools() first"
        _RUNNING[self.name] = self
        result = subprocess.run([server, "-detached"], env=self._env(), capture_output=True,
                                timeout=60, check=False)
        if result.returncode != 0:
            raise NodeError(f"rabbitmq-server -detached failed for {self.name}: "
                            f"{result.stderr.decode(errors='replace')}{self.log_tail()}")
        self._await(began + timeout, timeout)
        self._watch()
        self.start_seconds = time.monotonic() - began
        return self.start_seconds

    def _await(self, deadline: float, timeout: float) -> None:
        """``-detached`` returns before the node exists, and ``await_startup`` fails at once
        for a node epmd does not know yet: retry it until it succeeds or the node died."""
        while True:
            left = deadline - time.monotonic()
            answer = self._run_ctl("await_startup", "--timeout", str(max(1, int(left))))
            if answer.returncode == 0:
                return
            pid = self.pid()
            died = pid is not None and not _alive(pid)
            if died or time.monotonic() >= deadline:
                self.kill()
                state = "exited" if died else f"not running after {timeout:.0f} s"
                raise NodeError(f"{self.name} {state}: "
                                f"{answer.stderr.decode(errors='replace')[-500:]}"
                                f"{self.log_tail()}")
            time.sleep(0.3)

    def stop(self) -> None:
        """Stop the node cleanly; ``kill -9`` when it does not stop within a minute."""
        if self.pid() is None or not _alive(self.pid()):
            self._forget()
            return
        try:
            self.ctl("stop", timeout=60)
        except (NodeError, subprocess.TimeoutExpired):
            self.kill()
            return
        self._wait_gone(30)
        self._forget()

    def kill(self) -> None:
        """``kill -9`` the node's Erlang VM, as a crash would."""
        pid = self.pid()
        if pid is not None and _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._wait_gone(10)
        self._forget()

    def pid(self) -> int | None:
        try:
            return int((self.dir / "node.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def ctl(self, *args: str, timeout: float = 120) -> str:
        """``rabbitmqctl -n <node> args``; its output, or NodeError with what it said."""
        answer = self._run_ctl(*args, timeout=timeout)
        if answer.returncode != 0:
            raise NodeError(f"rabbitmqctl -n {self.name} {' '.join(args)} failed: "
                            f"{answer.stderr.decode(errors='replace')[-1000:]}")
        return answer.stdout.decode()

    def log_tail(self, lines: int = 30) -> str:
        path = self.dir / "log" / f"{self.name}.log"
        if not path.is_file():
            return ""
        return "\n--- end of " + str(path) + ":\n" + "\n".join(
            path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> ExtraNode:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------------------------

    def _write_files(self) -> None:
        (self.dir / "log").mkdir(parents=True, exist_ok=True)
        conf = [f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}"]
        if self.tls is not None:
            assert self.amqps_port is not None
            conf += self.tls.conf_lines(self.amqps_port)
        (self.dir / "rabbitmq.conf").write_text("\n".join([*conf, *self._extra_conf]) + "\n")
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq-env.conf").write_text("# empty: nothing from /etc/rabbitmq\n")

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
        env.update({
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_PID_FILE": str(self.dir / "node.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
                " ".join(["-kernel inet_dist_use_interface {127,0,0,1}", *self._erl_args]),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        })
        return env

    def _run_ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        return self.cli("rabbitmqctl", *args, timeout=timeout)

    def cli(self, script: str, *args: str, timeout: float = 120
            ) -> subprocess.CompletedProcess[bytes]:
        """``<script> -n <node> args`` for any of the CLI tools (``rabbitmq-queues``...)."""
        path = _script(script)
        assert path is not None, f"{script} not installed (call require_node_tools() first)"
        return subprocess.run([path, "-n", self.name, *args], env=self._env(),
                              capture_output=True, timeout=timeout, check=False)

    def _watch(self) -> None:
        """A watcher that kills the node once this process is gone, however it ended."""
        pid = self.pid()
        script = (f"while kill -0 {os.getpid()} 2>/dev/null && kill -0 {pid} 2>/dev/null;"
                  f" do sleep 1; done; kill -9 {pid} 2>/dev/null")
        self._watcher = subprocess.Popen(["sh", "-c", script], start_new_session=True,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _wait_gone(self, timeout: float) -> None:
        pid = self.pid()
        deadline = time.monotonic() + timeout
        while pid is not None and _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)

    def _forget(self) -> None:
        _RUNNING.pop(self.name, None)
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.kill()
            watcher.wait()


class ExtraCluster:
    """Several extra nodes joined into one RabbitMQ cluster (``join_cluster`` to the first).

    Each node keeps its own name, ports, config file and data directory; the machine's node is
    not part of it. ``url`` lists every node's URL, comma-separated, as ``broker.url`` takes it.
    """

    def __init__(self, base_dir: Path, size: int = 3) -> None:
        self.nodes = [ExtraNode(base_dir) for _ in range(size)]

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def start(self) -> None:
        first, *others = self.nodes
        for node in self.nodes:
            node.start()
        for node in others:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.name)
            node.ctl("start_app")
        running = first.ctl("cluster_status", "--formatter", "json")
        missing = [node.name for node in self.nodes if node.name not in running]
        if missing:
            raise NodeError(f"nodes not in the cluster after join_cluster: {missing}")

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()  # a clean stop of a cluster waits on its peers; the data is the test's

    def node(self, name: str) -> ExtraNode:
        return next(node for node in self.nodes if node.name == name)

    def running(self) -> list[ExtraNode]:
        return [node for node in self.nodes if _alive(node.pid())]

    def __enter__(self) -> ExtraCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (detached node reaped late) counts as gone
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z"):
            return False
    return True


@atexit.register
def _kill_leftovers() -> None:
    for node in list(_RUNNING.values()):
        node.kill()
