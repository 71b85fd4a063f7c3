"""What a failing cluster run leaves behind, to find out afterwards why it failed.

A cluster failure on this machine depends on timing, and the nodes are killed as the test ends:
what they knew at the moment of failure is gone unless it is kept. ``kept_on_failure`` keeps it
in a directory the failure message names: each node's own log files; every running node's view
of the queues (type, leader, members, members online, messages), which can differ from node to
node, and of its channels (publishes awaiting a confirm); ``rabbitmq-queues quorum_status`` of
the queues that matter; and what the test adds (the daemon's outcome counters, readiness).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.integration.extra_node import ExtraCluster, ExtraNode

__all__ = ["keep", "kept_on_failure"]

_ANSWER_WITHIN = 20.0  # seconds for each CLI call: a node without quorum can hang them


@contextlib.contextmanager
def kept_on_failure(
    cluster: ExtraCluster, queues: list[str], extra: Callable[[], dict[str, Any]],
) -> Iterator[None]:
    """Keep the evidence when the block fails (an assertion, or pytest-timeout's failure)."""
    try:
        yield
    except BaseException as exc:  # pytest's Failed (a timeout) is no Exception
        if not isinstance(exc, KeyboardInterrupt | SystemExit):
            _note(exc, keep(cluster, queues, extra, exc))
        raise


def keep(
    cluster: ExtraCluster, queues: list[str], extra: Callable[[], dict[str, Any]],
    failure: BaseException,
) -> Path:
    """Write the evidence into a new directory and return it."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base = Path(os.environ.get("FAULTS_EVIDENCE", tempfile.gettempdir()))
    where = base / f"silobridge-cluster-{stamp}-{os.getpid()}"
    where.mkdir(parents=True, exist_ok=True)
    try:
        added: Any = extra()
    except Exception as exc:  # the evidence must not hide the failure it documents
        added = f"could not be read: {exc!r}"
    lines = [f"failure: {failure!r}", f"at: {stamp}", f"test: {json.dumps(added, default=str)}"]
    running = cluster.running()
    for node in cluster.nodes:
        state = "running" if node in running else "down"
        lines.append(f"\n== {node.name} (amqp {node.amqp_port}): {state}")
        if node in running:
            lines.append(_answer(node, "rabbitmqctl", "list_queues", "name", "type", "leader",
                                 "members", "online", "messages", "--formatter", "json"))
        log_dir = node.dir / "log"
        if log_dir.is_dir():
            shutil.copytree(log_dir, where / node.short, dirs_exist_ok=True)
    if running:
        lines.append(f"\n== channels (asked {running[0].name})")
        lines.append(_answer(running[0], "rabbitmqctl", "list_channels", "name", "confirm",
                             "messages_unconfirmed", "messages_unacknowledged",
                             "--formatter", "json"))
        for queue in queues:
            lines.append(f"\n== quorum_status {queue} (asked {running[0].name})")
            lines.append(_answer(running[0], "rabbitmq-queues", "quorum_status", queue,
                                 "--formatter", "json"))
    (where / "evidence.txt").write_text("\n".join(lines) + "\n")
    return where


def _answer(node: ExtraNode, script: str, *args: str) -> str:
    try:
        answer = node.cli(script, *args, timeout=_ANSWER_WITHIN)
    except subprocess.TimeoutExpired:
        return f"{script} {' '.join(args)}: no answer within {_ANSWER_WITHIN:g} s"
    return (answer.stdout + answer.stderr).decode(errors="replace")


def _note(exc: BaseException, where: Path) -> None:
    message = f"cluster evidence (node logs, queue states) kept in {where}"
    exc.add_note(message)
    sys.stderr.write(message + "\n")
