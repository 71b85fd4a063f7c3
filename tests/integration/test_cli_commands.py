"""The operator commands against the real broker: ``send -`` from stdin, ``--json`` output of
``peek``, ``dlq list`` and ``status``, and ``topology diff|prune`` finding and removing the
queues of a route that left the config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pika
import pytest

from middleware.broker.topology import dlq_name, queue_name, retry_name
from middleware.config.loader import LoadedConfig
from tests.integration.helpers import queue_count

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "middleware", *args], capture_output=True,
                          input=stdin, timeout=60, cwd=ROOT, env=dict(os.environ))
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(),
                                       done.stderr.decode())


def _route(prefix: str, name: str) -> dict[str, Any]:
    return {"name": f"{prefix}-{name}", "bind": [f"{prefix}.{name}.*"],
            "target": {"type": "amqp", "exchange": f"{prefix}.out", "routing_key": "x"}}


def test_cli_send_from_stdin_then_peek_dlq_and_status_as_json(
    make_config: Callable[..., LoadedConfig], prefix: str, amqp_url: str
) -> None:
    loaded = make_config([_route(prefix, "a")])
    config = str(loaded.path)
    assert _cli("topology", "apply", "-c", config).returncode == 0
    # When an event arrives on standard input
    sent = _cli("send", "-", "--type", f"{prefix}.a.updated", "--id", f"{prefix}-1",
                "-c", config, stdin=b'{"customer_no": "C-1"}')
    assert sent.returncode == 0, sent.stderr
    # Then peek --json shows it in the route queue, as JSON
    peeked = _cli("peek", queue_name(f"{prefix}-a"), "--json", "-c", config)
    assert peeked.returncode == 0, peeked.stderr
    [message] = json.loads(peeked.stdout)
    assert message["id"] == f"{prefix}-1"
    assert message["body"]["data"] == {"customer_no": "C-1"}
    listed = _cli("dlq", "list", f"{prefix}-a", "--json", "-c", config)
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    status = _cli("status", "--json", "--interval", "0.1", "-c", config)
    assert status.returncode == 0, status.stderr
    document = json.loads(status.stdout)
    assert document["daemon"] is False
    [row] = document["routes"]
    assert row["route"] == f"{prefix}-a" and row["queues"]["ready"] == 1


def test_cli_topology_diff_and_prune_find_and_remove_a_route_that_left_the_config(
    make_config: Callable[..., LoadedConfig], prefix: str, amqp_url: str
) -> None:
    both = make_config([_route(prefix, "a"), _route(prefix, "b")])
    assert _cli("topology", "apply", "-c", str(both.path)).returncode == 0
    # Given route b removed from the config while its queue holds a message
    only_a = str(make_config([_route(prefix, "a")]).path)
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    connection.channel().basic_publish("", queue_name(f"{prefix}-b"), b"{}")
    connection.close()
    diff = _cli("topology", "diff", "--json", "-c", only_a)
    assert diff.returncode == 0, diff.stderr
    mine = [item for item in json.loads(diff.stdout) if item["route"].startswith(prefix)]
    tiers = len(both.config.retry_for(both.config.routes[1]).delays())
    assert mine == [{"route": f"{prefix}-b", "messages": 1, "queues": {
        queue_name(f"{prefix}-b"): 1,
        **{retry_name(f"{prefix}-b", n): 0 for n in range(1, tiers + 1)},
        dlq_name(f"{prefix}-b"): 0}}]
    # Then prune refuses to lose the message without --force, and removes the queues with it
    mine_only = ("--route", f"{prefix}-b")  # other tests' routes share this broker
    refused = _cli("topology", "prune", "--yes", *mine_only, "-c", only_a)
    assert refused.returncode == 1 and "--force" in refused.stderr
    assert queue_count(amqp_url, queue_name(f"{prefix}-b")) == 1
    pruned = _cli("topology", "prune", "--yes", "--force", *mine_only, "-c", only_a)
    assert pruned.returncode == 0, pruned.stderr
    gone = pika.BlockingConnection(pika.URLParameters(amqp_url))
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        gone.channel().queue_declare(queue_name(f"{prefix}-b"), passive=True)
    gone.close()
    assert queue_count(amqp_url, queue_name(f"{prefix}-a")) == 0  # the kept route stays
    after = json.loads(_cli("topology", "diff", "--json", "-c", only_a).stdout)
    assert not [item for item in after if item["route"].startswith(prefix)]
