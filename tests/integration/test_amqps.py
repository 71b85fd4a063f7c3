"""``amqps://`` end to end, against RabbitMQ nodes with TLS listeners that these tests configure.

The shared broker has no TLS listener and must not be reconfigured, so each module-scoped
fixture starts an extra node (tests/integration/extra_node.py) with certificates made here by
trustme: one node that only presents its certificate, one that also requires a client
certificate (``verify_peer`` + ``fail_if_no_peer_cert``). Where a node cannot start, the tests
skip locally and fail under ``CI``, like the rest of the integration tier.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pika
import pytest
import trustme
import yaml

from middleware.broker.rabbitmq.connection import connection_parameters
from middleware.broker.topology import dlq_name
from middleware.config.loader import LoadedConfig, load_config
from middleware.config.models import BrokerConfig
from middleware.daemon import Daemon, Role
from tests.integration.extra_node import ExtraNode, NodeError, NodeTls, require_node_tools
from tests.integration.helpers import wait_until
from tests.integration.rest_helpers import endpoint
from tests.ports import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Pki:
    """A CA, the broker's certificate for localhost/127.0.0.1, a client certificate, and a
    second CA that signed none of them."""

    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca: str


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("silobridge-client")
    files = {
        "ca": ca.cert_pem, "server_cert": server.cert_chain_pems[0],
        "server_key": server.private_key_pem, "client_cert": client.cert_chain_pems[0],
        "client_key": client.private_key_pem, "other_ca": other.cert_pem,
    }
    for name, blob in files.items():
        blob.write_to_path(str(root / f"{name}.pem"))
    return Pki(**{name: str(root / f"{name}.pem") for name in files})


def _node(base: Path, pki: Pki, *, require_client_cert: bool) -> Iterator[ExtraNode]:
    require_node_tools()
    node = ExtraNode(base, tls=NodeTls(Path(pki.ca), Path(pki.server_cert),
                                       Path(pki.server_key), require_client_cert))
    try:
        seconds = node.start()
    except NodeError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the TLS RabbitMQ node did not start (CI is set): {exc}")
        pytest.skip(f"the TLS RabbitMQ node did not start: {exc}")
    print(f"\n{node.name} started in {seconds:.1f} s")  # shown with -s; reported by the lead
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[ExtraNode]:
    """A node with a TLS listener (TLS 1.2/1.3) that does not ask for client certificates."""
    yield from _node(tmp_path_factory.mktemp("tls-node"), pki, require_client_cert=False)


@pytest.fixture(scope="module")
def mtls_node(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[ExtraNode]:
    """A node that refuses TLS clients without a certificate signed by the test CA."""
    yield from _node(tmp_path_factory.mktemp("mtls-node"), pki, require_client_cert=True)


def _write_config(path: Path, url: str, tls: dict[str, str], prefix: str,
                  ops_port: int = 0) -> Path:
    """One REST endpoint publishing '<prefix>.customer.updated' and one route delivering it to
    an AMQP target whose queue keeps the results."""
    document: dict[str, Any] = {
        "broker": {"url": url, "tls": tls, "publish_timeout": 5, "reconnect_max_delay": 1},
        "ops": {"port": ops_port},
        "ingress": {"port": 0},
        "store": {"path": str(path.parent / f"{prefix}-store.db")},
        "inbound": [endpoint(prefix, "hook", derive={
            "entity": {"value": "customer"}, "action": {"value": "updated"},
            "subject": {"path": "customer_no"}})],
        "routes": [{"name": f"{prefix}-r", "bind": [f"{prefix}.customer.*"],
                    "target": {"type": "amqp", "exchange": f"{prefix}.out",
                               "routing_key": "erp.account", "queue": f"{prefix}.out"}}],
    }
    path.write_text(yaml.safe_dump(document))
    return path


def _load(tmp_path: Path, url: str, tls: dict[str, str], prefix: str) -> LoadedConfig:
    return load_config(_write_config(tmp_path / "config.yaml", url, tls, prefix))


def _broker(url: str, tls: dict[str, str]) -> BrokerConfig:
    return BrokerConfig.model_validate({"url": url, "tls": tls})


def _drain(broker: BrokerConfig, queue: str, count: int, timeout: float = 20) -> list[Any]:
    """Take ``count`` messages from a queue over TLS (the far end of the route)."""
    connection = pika.BlockingConnection(connection_parameters(broker, "test-far-end"))
    try:
        channel = connection.channel()
        bodies: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(bodies) < count and time.monotonic() < deadline:
            method, _props, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                time.sleep(0.1)
                continue
            bodies.append(orjson.loads(body))
        return bodies
    finally:
        connection.close()


def _silobridge_connections(node: ExtraNode) -> list[tuple[str, bool, str]]:
    """(connection name, ssl, protocol) of every silobridge connection the node sees."""
    rows = []
    for connection in json.loads(node.ctl("list_connections", "-q", "client_properties", "ssl",
                                          "ssl_protocol", "--formatter", "json")):
        names = [value for key, _kind, value in connection["client_properties"]
                 if key == "connection_name"]
        if names and names[0].startswith("silobridge-"):
            rows.append((names[0], connection["ssl"], connection["ssl_protocol"]))
    return rows


def _post_events(daemon: Daemon, prefix: str, count: int) -> list[str]:
    assert daemon.ingress is not None
    url = f"http://127.0.0.1:{daemon.ingress.port}/hooks/{prefix}/hook"
    ids = []
    for n in range(count):
        response = httpx.post(url, json={"customer_no": f"C-{n}"}, timeout=10)
        assert response.status_code == 202, response.text
        ids.extend(response.json()["ids"])
    return ids


def _run_daemon(loaded: LoadedConfig) -> Daemon:
    daemon = Daemon(loaded, Role.ALL)
    daemon.start()
    assert wait_until(lambda: all(daemon.readiness().values()), 10), daemon.readiness()
    return daemon


# -- the daemon over TLS ------------------------------------------------------------------------


def test_amqps_daemon_delivers_ingress_events_to_an_amqp_target_over_tls(
    tls_node: ExtraNode, pki: Pki, prefix: str, tmp_path: Path
) -> None:
    # Given a daemon whose broker URL is amqps:// with the test CA, verifying host "localhost"
    tls = {"ca_file": pki.ca}
    loaded = _load(tmp_path, tls_node.tls_url("localhost"), tls, prefix)
    daemon = _run_daemon(loaded)
    try:
        # When 20 webhooks arrive at the REST ingress
        ids = _post_events(daemon, prefix, 20)
        # Then the route delivers each one to the AMQP target, read at the far end over TLS
        out = _drain(_broker(tls_node.tls_url(), tls), f"{prefix}.out", 20)
        assert sorted(event["id"] for event in out) == sorted(ids)
        assert sorted(event["subject"] for event in out) == sorted(f"C-{n}" for n in range(20))
        # and every connection of the daemon is a TLS one (1.2 or later)
        connections = _silobridge_connections(tls_node)
        names = {name for name, _, _ in connections}
        assert {"silobridge-publish", "silobridge-consume"} <= names, connections
        assert all(ssl is True and protocol in ("tlsv1.2", "tlsv1.3")
                   for _, ssl, protocol in connections), connections
    finally:
        daemon.stop()


def test_amqps_ip_address_url_verifies_the_certificate_ip_entry(
    tls_node: ExtraNode, pki: Pki, prefix: str
) -> None:
    # The certificate names 127.0.0.1 too; a URL by IP address must verify against that entry
    broker = _broker(tls_node.tls_url("127.0.0.1"), {"ca_file": pki.ca})
    connection = pika.BlockingConnection(connection_parameters(broker, f"{prefix}-ip"))
    assert connection.is_open
    connection.close()


def test_amqps_host_name_not_in_certificate_is_refused(
    tls_node: ExtraNode, pki: Pki, prefix: str
) -> None:
    # Given the right CA but a server_hostname the broker certificate does not name
    broker = _broker(tls_node.tls_url("127.0.0.1"),
                     {"ca_file": pki.ca, "server_hostname": "mq.example.com"})
    # Then the handshake fails on the host name, not silently succeeds
    with pytest.raises((pika.exceptions.AMQPConnectionError, ssl.SSLError),
                       match=r"not valid for 'mq\.example\.com'"):
        pika.BlockingConnection(connection_parameters(broker, f"{prefix}-host"))


# -- refusals seen by an operator: the daemon as a process ----------------------------------------


def _refused_daemon(tmp_path: Path, url: str, tls: dict[str, str], prefix: str,
                    expected: str) -> tuple[int, str]:
    """Run ``silobridge run`` against a broker that refuses it; (readyz status, log) once the
    log says ``expected``."""
    ops = free_port()
    config = _write_config(tmp_path / "config.yaml", url, tls, prefix, ops_port=ops)
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "middleware", "run", "-c", str(config), "--log-format",
             "json"], stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        assert wait_until(lambda: expected in log_path.read_text(), 30), log_path.read_text()
        ready = httpx.get(f"http://127.0.0.1:{ops}/readyz", timeout=5)
        assert process.poll() is None, "a broker refusal must not end the daemon"
        # an orchestrator's SIGTERM ends it promptly, though it never reached the broker
        process.terminate()
        assert process.wait(15) == 1
        return ready.status_code, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)


def test_amqps_wrong_ca_is_refused_with_a_clear_error_and_not_ready(
    tls_node: ExtraNode, pki: Pki, prefix: str, tmp_path: Path
) -> None:
    # Given a daemon trusting a CA that did not sign the broker's certificate
    status, log = _refused_daemon(tmp_path, tls_node.tls_url(), {"ca_file": pki.other_ca},
                                  prefix, "CERTIFICATE_VERIFY_FAILED")
    # Then it says why, and /readyz stays 503 while it keeps trying
    assert status == 503
    line = next(json.loads(x) for x in log.splitlines() if "CERTIFICATE_VERIFY_FAILED" in x)
    assert "certificate verify failed" in line["error"]
    assert line["event"] in ("broker unreachable", "broker connection failed")
    # nothing was declared on the broker it could not trust
    assert f"silobridge.route.{prefix}-r" not in tls_node.ctl("list_queues", "-q", "name")


def test_amqps_missing_ca_file_is_named_in_the_log_and_not_ready(
    tls_node: ExtraNode, prefix: str, tmp_path: Path
) -> None:
    missing = str(tmp_path / "absent-ca.pem")
    status, log = _refused_daemon(tmp_path, tls_node.tls_url(), {"ca_file": missing}, prefix,
                                  "absent-ca.pem")
    assert status == 503
    assert f"broker.tls.ca_file {missing}: No such file or directory" in log


def test_amqps_client_certificate_required_refuses_a_daemon_without_one(
    mtls_node: ExtraNode, pki: Pki, prefix: str, tmp_path: Path
) -> None:
    status, log = _refused_daemon(tmp_path, mtls_node.tls_url(), {"ca_file": pki.ca}, prefix,
                                  "CERTIFICATE_REQUIRED")
    assert status == 503
    assert "certificate required" in log.lower()


def test_amqps_client_certificate_is_accepted_and_delivers(
    mtls_node: ExtraNode, pki: Pki, prefix: str, tmp_path: Path
) -> None:
    # Given the same node, and a daemon presenting the client certificate
    tls = {"ca_file": pki.ca, "cert_file": pki.client_cert, "key_file": pki.client_key}
    daemon = _run_daemon(_load(tmp_path, mtls_node.tls_url(), tls, prefix))
    try:
        # When a webhook arrives, then it is delivered over mutual TLS
        ids = _post_events(daemon, prefix, 3)
        out = _drain(_broker(mtls_node.tls_url(), tls), f"{prefix}.out", 3)
        assert sorted(event["id"] for event in out) == sorted(ids)
        assert all(ssl is True for _, ssl, _ in _silobridge_connections(mtls_node))
    finally:
        daemon.stop()


# -- the CLI over TLS ---------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "middleware", *args], capture_output=True,
                          text=True, timeout=60, cwd=REPO, check=False)


def test_amqps_cli_topology_dlq_peek_and_status_work_against_the_tls_node(
    tls_node: ExtraNode, pki: Pki, prefix: str, tmp_path: Path
) -> None:
    tls = {"ca_file": pki.ca}
    config = str(_write_config(tmp_path / "config.yaml", tls_node.tls_url(), tls, prefix))
    route = f"{prefix}-r"
    # topology apply declares the route's queues on the TLS node
    applied = _cli("topology", "apply", "-c", config)
    assert applied.returncode == 0, applied.stderr
    assert "declared" in applied.stdout
    assert dlq_name(route) in tls_node.ctl("list_queues", "-q", "name").split()
    # Given one dead letter in the route's DLQ
    broker = _broker(tls_node.tls_url(), tls)
    connection = pika.BlockingConnection(connection_parameters(broker, "test-dead-letter"))
    channel = connection.channel()
    channel.confirm_delivery()
    body = orjson.dumps({"specversion": "1.0", "id": f"{prefix}-dead", "subject": "C-7",
                         "type": f"{prefix}.customer.updated", "source": "test"})
    channel.basic_publish("", dlq_name(route), body, pika.BasicProperties(
        message_id=f"{prefix}-dead", type=f"{prefix}.customer.updated", delivery_mode=2))
    connection.close()
    # dlq list and peek show it, over TLS
    listed = _cli("dlq", "list", route, "-c", config)
    assert listed.returncode == 0, listed.stderr
    assert f"{prefix}-dead" in listed.stdout and "1 dead letter(s)" in listed.stdout
    peeked = _cli("peek", dlq_name(route), "-c", config)
    assert peeked.returncode == 0, peeked.stderr
    assert f"--- {prefix}-dead" in peeked.stdout and '"C-7"' in peeked.stdout
    # status reads the queue depths from the TLS node (no daemon runs: broker columns only)
    status = _cli("status", "-c", config, "--interval", "0.1")
    assert status.returncode == 0, status.stderr
    row = next(line for line in status.stdout.splitlines() if line.startswith(route))
    assert row.split()[1:4] == ["0", "0", "1"], status.stdout  # ready, retry, dlq


def test_amqps_cli_with_the_wrong_ca_says_why_without_a_traceback(
    tls_node: ExtraNode, pki: Pki, prefix: str, tmp_path: Path
) -> None:
    config = str(_write_config(tmp_path / "config.yaml", tls_node.tls_url(),
                               {"ca_file": pki.other_ca}, prefix))
    for args in (("dlq", "list", f"{prefix}-r"), ("peek", "anything"),
                 ("topology", "apply")):
        result = _cli(*args, "-c", config)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert "CERTIFICATE_VERIFY_FAILED" in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)
