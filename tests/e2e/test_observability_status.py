"""``silobridge status`` against a real broker and daemon: the DLQ count and age, in-flight and
sync lag of each route; after the daemon stopped, the broker columns alone; ``--watch``
redraws until Ctrl-C and exits 0."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from middleware.broker.topology import dlq_name
from middleware.scrape import parse
from tests.e2e.conftest import DaemonProcess
from tests.integration.helpers import publish_events, queue_count, wait_until

pytestmark = pytest.mark.e2e

MAPPING = Path(__file__).resolve().parents[2] / "mappings" / "crm-erp" / "customer-to-account.yaml"
EVENTS = 5


def _status(config: Path, *extra: str) -> str:
    done = subprocess.run([sys.executable, "-m", "middleware", "status", "-c", str(config),
                           "--interval", "0.5", *extra], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _row(table: str, route: str) -> list[str]:
    (line,) = [line for line in table.splitlines() if line.startswith(route + " ")]
    return line.split()


def test_status_shows_routes_from_broker_and_daemon_then_broker_only(
    amqp_url: str, prefix: str, daemon_process: Callable[..., DaemonProcess], out_queue: str,
) -> None:
    ok, bad = f"{prefix}-ok", f"{prefix}-bad"
    target = {"type": "amqp", "exchange": out_queue, "routing_key": "x", "queue": out_queue}
    daemon = daemon_process([
        {"name": ok, "bind": [f"{prefix}.customer.*"], "target": target},
        # the events lack the fields the CRM customer schema requires: dead letters
        {"name": bad, "bind": [f"{prefix}.customer.*"], "mapping": str(MAPPING),
         "target": target},
    ])
    daemon.start()
    daemon.wait_ready()
    publish_events(amqp_url, prefix, EVENTS)
    assert wait_until(lambda: queue_count(amqp_url, dlq_name(bad)) == EVENTS, 20)

    def delivered() -> float:
        metrics = parse(daemon.metrics())
        return metrics.sum("silobridge_messages_total", route=ok, outcome="delivered")

    assert wait_until(lambda: delivered() == EVENTS, 20)

    # route  ready retry dlq "dlq age" in-flight delivered/s failed/s "lag p95"
    table = _status(daemon.config)
    assert "no daemon answers" not in table
    good_row, bad_row = _row(table, ok), _row(table, bad)
    assert good_row[1:4] == ["0", "0", "0"] and good_row[4] == "-"
    assert good_row[5] == "0" and good_row[8].endswith("s") and good_row[8] != "-"
    assert bad_row[1:4] == ["0", "0", str(EVENTS)] and bad_row[4].endswith("s")
    assert bad_row[8] == "-", "a route that delivered nothing has no sync lag"

    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
    table = _status(daemon.config)
    assert "no daemon answers" in table
    assert _row(table, bad)[1:4] == ["0", "0", str(EVENTS)]
    assert _row(table, ok)[5:] == ["-", "-", "-", "-"]


def test_status_watch_redraws_until_interrupted(
    prefix: str, daemon_process: Callable[..., DaemonProcess],
) -> None:
    daemon = daemon_process([{"name": f"{prefix}-r", "bind": [f"{prefix}.#"],
                              "target": {"type": "amqp", "exchange": f"{prefix}.out",
                                         "routing_key": "x"}}])
    daemon.topology_apply()
    watch = subprocess.Popen([sys.executable, "-m", "middleware", "status", "-c",
                              str(daemon.config), "--watch", "--interval", "0.3"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # (interrupted once two redraws of the route were seen, however long they took)
    stdout, stderr = watch.stdout, watch.stderr
    assert stdout is not None and stderr is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")))
    reader.start()
    wait_until(lambda: "".join(lines).count("\x1b[H\x1b[2J") >= 2
               and f"{prefix}-r" in "".join(lines), 60)
    watch.send_signal(signal.SIGINT)
    assert watch.wait(20) == 0, stderr.read()
    reader.join(10)
    out = "".join(lines)
    assert out.count("\x1b[H\x1b[2J") >= 2, out
    assert f"{prefix}-r" in out
