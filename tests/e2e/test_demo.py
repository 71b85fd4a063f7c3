"""``silobridge demo --rate 20 --duration 20``, as documented (the README's rate; 20 s rather than
its 30 s is the CI cost, and still four progress views): unattended, it shows progress, then prints
counts in which what the CRM sent (and the warehouse reported), what the daemon delivered and
what the ERP holds (and the CRM received back) agree, and the deliberately bad events are the
dead letters (checked again on the broker afterwards). Customers sync both ways while both
systems report every write back and their users edit customers: the summary shows both
systems equal field by field, exactly one write per change, and echoes recognised.

The demo runs on its own RabbitMQ virtual host where ``rabbitmqctl`` is at hand, so its fixed
route names never meet other tests' events.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pika
import pytest

from middleware.broker.topology import dlq_name, hold_name, queue_name, retry_name
from tests.e2e.conftest import free_port
from tests.integration.helpers import wait_until

pytestmark = pytest.mark.e2e

ROUTES = {"accounts": "demo-customer-account", "sales orders": "demo-order-sales-order",
          "reservations": "demo-order-reservation", "shipments": "demo-shipment-to-crm"}
TWO_WAY = "demo-account-customer"
ROW = re.compile(r"^(sales orders|reservations|shipments)"
                 r"\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", re.MULTILINE)
REPORTED = re.compile(r"warehouse reported (\d+) shipments")
SENT = re.compile(r"CRM sent: (\d+) customers \((\d+) bad\), (\d+) won orders \((\d+) bad\)")
ACCOUNTS = re.compile(r"accounts: (\d+) in the ERP for (\d+) good CRM customers; bad customers "
                      r"in the DLQ (\d+) \((\d+) expected\)")
CHANGES = re.compile(r"changes: CRM (\d+) \(new customers and edits\), ERP (\d+) \(edits\); "
                     r"(\d+) customers edited on both sides at once")
WRITES = re.compile(r"writes: into the ERP (\d+) = ([\d.]+) per CRM change, into the CRM (\d+) = "
                    r"([\d.]+) per ERP change; writes that changed nothing \(echoes written back\) "
                    r"(\d+)")
ECHOES = re.compile(r"echoes recognised, not written back: (\d+); conflicts resolved by the "
                    r"rule: (\d+)")
COMPARED = re.compile(r"field by field, CRM vs ERP through the xref: (\d+) customers compared, "
                      r"(\d+) mismatches")


def _delete_demo_queues(url: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    for route in [*ROUTES.values(), TWO_WAY]:
        for queue in (queue_name(route), retry_name(route, 1), retry_name(route, 2),
                      dlq_name(route), hold_name(route)):
            channel.queue_delete(queue)
    connection.close()


def _ctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def demo_broker(amqp_url: str, prefix: str) -> Iterator[str]:
    """A virtual host of its own on the local broker (the shared one without rabbitmqctl)."""
    parts = urlsplit(amqp_url)
    if shutil.which("rabbitmqctl") is None or parts.hostname not in ("127.0.0.1", "localhost"):
        yield amqp_url
        _delete_demo_queues(amqp_url)
        return
    vhost = f"silobridge-demo-{prefix}"
    _ctl("add_vhost", vhost)
    try:
        _ctl("set_permissions", "-p", vhost, parts.username or "guest", ".*", ".*", ".*")
        yield urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))
    finally:
        _ctl("delete_vhost", vhost)


def _env(broker: str) -> dict[str, str]:
    """The caller's environment with the demo on free loopback ports and ``broker``."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("INGRESS_URL", "SILOBRIDGE_DATA", "SILOBRIDGE_DEMO_WEBHOOK_SECRET")}
    env.update(AMQP_URL=broker, SILOBRIDGE_OPS_PORT=str(free_port()),
               SILOBRIDGE_INGRESS_PORT=str(free_port()),
               ERP_URL=f"http://127.0.0.1:{free_port()}", CRM_URL=f"http://127.0.0.1:{free_port()}")
    return env


def test_demo_duration_runs_unattended_and_ends_with_matching_counts(
    demo_broker: str, tmp_path: Path,
) -> None:
    # When the documented command runs for 20 seconds without a terminal
    done = subprocess.run([sys.executable, "-m", "middleware", "demo", "--rate", "20",
                           "--duration", "20"],
                          capture_output=True, text=True, env=_env(demo_broker), cwd=tmp_path,
                          timeout=240)
    output = done.stdout + done.stderr
    # Then it showed progress while running and ended with counts that match
    assert done.returncode == 0, output
    assert output.count("silobridge demo: ") >= 4, output
    assert "result: counts match" in output, output
    sent = SENT.search(output)
    assert sent is not None, output
    customers, bad_customers, orders, bad_orders = (int(n) for n in sent.groups())
    assert customers + orders >= 200, "the CRM sent far less than 20 s at 20 events/s"
    assert bad_customers + bad_orders > 0, "no bad events: the DLQ shows nothing"
    reported = REPORTED.search(output)
    assert reported is not None, output
    shipments = int(reported.group(1))
    assert shipments == orders - bad_orders, "every sales order is shipped once"
    rows = {kind: [int(n) for n in numbers] for kind, *numbers in ROW.findall(output)}
    assert rows.keys() == ROUTES.keys() - {"accounts"}, output
    expected = {"accounts": (customers - bad_customers, bad_customers),
                "sales orders": (orders - bad_orders, bad_orders),
                "reservations": (orders, 0), "shipments": (shipments, 0)}
    for kind, (want, in_erp, delivered, dead, want_dead) in rows.items():
        assert (want, want_dead) == expected[kind], kind
        assert want == in_erp == delivered and dead == want_dead, (kind, output)
    accounts = ACCOUNTS.search(output)
    assert accounts is not None, output
    in_erp, good, dead, want_dead = (int(n) for n in accounts.groups())
    assert in_erp == good == customers - bad_customers, output
    assert dead == want_dead == bad_customers, output
    # And customers went both ways: edited on both sides, each change written exactly once
    # into the other system, nothing written back, and both systems equal field by field
    changes, writes, echoes, compared = (pattern.search(output) for pattern in
                                         (CHANGES, WRITES, ECHOES, COMPARED))
    assert changes and writes and echoes and compared, output
    crm_changes, erp_changes, both = (int(n) for n in changes.groups())
    assert crm_changes > good and erp_changes > 0 and both > 0, "users edited on both sides"
    assert writes.groups() == (str(crm_changes), "1.00", str(erp_changes), "1.00", "0"), output
    assert int(echoes.group(1)) == crm_changes + erp_changes, "every write is reported back"
    assert int(echoes.group(2)) >= both, "each customer edited on both sides at once conflicts"
    assert compared.groups() == (str(good), "0"), output
    # And the dead letters are on the broker, where `silobridge dlq` finds them
    connection = pika.BlockingConnection(pika.URLParameters(demo_broker))
    try:
        channel = connection.channel()
        for kind, route in ROUTES.items():
            waiting = channel.queue_declare(dlq_name(route), passive=True).method.message_count
            assert waiting == expected[kind][1], kind
    finally:
        connection.close()


def test_demo_stops_cleanly_on_ctrl_c_with_the_summary(demo_broker: str, tmp_path: Path) -> None:
    demo = subprocess.Popen([sys.executable, "-m", "middleware", "demo", "--rate", "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=_env(demo_broker), cwd=tmp_path)
    stdout = demo.stdout
    assert stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")))
    reader.start()
    try:
        # interrupted once a progress view showed events sent, however long that took
        wait_until(lambda: any(re.match(r"sent [1-9]", line) for line in lines), 120)
        demo.send_signal(signal.SIGINT)
        demo.wait(120)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
        reader.join(10)
    output = "".join(lines)
    assert demo.returncode == 0, output
    assert "silobridge demo: " in output and "Ctrl-C: stopping" in output, output
    assert "result: counts match" in output, output
    assert "Traceback" not in output, output
