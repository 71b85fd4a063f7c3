"""``processes: {ingress: 2, worker: 2}``: one command, a supervisor and four processes.

Signed webhooks on new connections reach both ingress processes through the one shared port
(SO_REUSEPORT), each accepted event is delivered once to the AMQP target; a worker SIGKILLed by
someone else is started again and readiness says so meanwhile; SIGTERM to the supervisor stops
every process with a drain, exit 0.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pika
import pytest
import yaml

from middleware.broker.topology import dlq_name, queue_name, retry_name
from tests.integration.helpers import drain, queue_count, wait_until
from tests.integration.pg_helpers import pg_dsn  # noqa: F401  (a fixture)
from tests.integration.rest_helpers import hmac_hex
from tests.ports import free_port

pytestmark = pytest.mark.e2e

SECRET = "processes-secret"
EVENTS = 200


@pytest.fixture
def queues(amqp_url: str, prefix: str) -> Iterator[tuple[str, str]]:
    route, out = f"{prefix}-route", f"{prefix}.out"
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.exchange_declare(out, "topic", durable=True)
    channel.queue_declare(out, durable=True)
    channel.queue_bind(out, out, "#")
    yield route, out
    for queue in (out, queue_name(route), dlq_name(route),
                  *(retry_name(route, n) for n in range(1, 6))):
        channel.queue_delete(queue)
    channel.exchange_delete(out)
    connection.close()


def _config(tmp_path: Path, amqp_url: str, dsn: str, prefix: str, route: str, out: str,
            ops: int, ingress: int) -> Path:
    document = {
        "broker": {"url": amqp_url},
        "ops": {"port": ops}, "ingress": {"host": "127.0.0.1", "port": ingress},
        "store": {"kind": "postgres", "dsn": dsn, "pool_size": 2},
        "processes": {"ingress": 2, "worker": 2},
        "shutdown_grace": 10,
        "inbound": [{"type": "rest", "name": f"{prefix}-hook", "path": "/hook", "system": prefix,
                     "source": "crm/e2e",
                     "auth": {"scheme": "hmac", "header": "X-Signature",
                              "secret_env": "PROCESSES_SECRET"},
                     "derive": {"entity": {"value": "customer"}, "action": {"value": "changed"},
                                "subject": {"path": "n"}}}],
        "routes": [{"name": route, "bind": [f"{prefix}.customer.changed"],
                    "target": {"type": "amqp", "exchange": out, "routing_key": "erp"}}],
    }
    path = tmp_path / "silobridge.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _readyz(port: int) -> httpx.Response | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
    except httpx.HTTPError:
        return None


def _received(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    return sum(float(value) for value in
               re.findall(r'^silobridge_received_total\{[^}]*\} (\S+)$', text, re.M))


def _pid(body: dict[str, object], name: str) -> int:
    reasons = body["reasons"]
    assert isinstance(reasons, dict)
    found = re.match(r"pid (\d+)", str(reasons[name]))
    assert found, reasons
    return int(found.group(1))


def test_supervisor_runs_shares_the_ingress_port_restarts_and_drains(
        tmp_path: Path, amqp_url: str, pg_dsn: str, prefix: str,  # noqa: F811
        queues: tuple[str, str]) -> None:
    route, out = queues
    ops, ingress = free_port(), free_port()
    config = _config(tmp_path, amqp_url, pg_dsn, prefix, route, out, ops, ingress)
    log = (tmp_path / "supervisor.log").open("wb")
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "middleware", "run", "-c", str(config), "--log-format", "json"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PROCESSES_SECRET": SECRET})
    try:
        assert wait_until(lambda: (r := _readyz(ops)) is not None and r.status_code == 200,
                          90), (tmp_path / "supervisor.log").read_text()[-3000:]
        body = httpx.get(f"http://127.0.0.1:{ops}/readyz").json()
        assert set(body["checks"]) == {"ingress-0", "ingress-1", "worker-0", "worker-1"}

        for n in range(EVENTS):  # a new connection each: the kernel spreads them
            payload = f'{{"n": "C-{n}"}}'.encode()
            answer = httpx.post(f"http://127.0.0.1:{ingress}/hook", content=payload, headers={
                "Content-Type": "application/json", "X-Signature": hmac_hex(SECRET, payload)})
            assert answer.status_code == 202, answer.text
        per_process = [_received(ops + 1), _received(ops + 2)]
        assert sum(per_process) == EVENTS and min(per_process) > 0, per_process

        assert wait_until(lambda: queue_count(amqp_url, out) >= EVENTS, 60)
        delivered = [props.message_id for props, _body in drain(amqp_url, out)]
        assert len(delivered) == len(set(delivered)) == EVENTS

        worker = _pid(body, "worker-0")
        os.kill(worker, signal.SIGKILL)
        assert wait_until(lambda: (r := _readyz(ops)) is not None and r.status_code == 503, 30)
        assert wait_until(lambda: (r := _readyz(ops)) is not None and r.status_code == 200
                          and _pid(r.json(), "worker-0") != worker, 90)
        assert "restarts 1" in httpx.get(f"http://127.0.0.1:{ops}/readyz").json()["reasons"][
            "worker-0"]
        pids = [_pid(httpx.get(f"http://127.0.0.1:{ops}/readyz").json(), name)
                for name in ("ingress-0", "ingress-1", "worker-0", "worker-1")]
    finally:
        supervisor.send_signal(signal.SIGTERM)
        code = supervisor.wait(60)
        log.close()
    assert code == 0, (tmp_path / "supervisor.log").read_text()[-3000:]
    for pid in pids:  # every process ended with the supervisor
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
