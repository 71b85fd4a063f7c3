"""Bad webhook input is answered precisely and nothing is stored; duplicates are not republished;
the broker being down means 503 + Retry-After, never 2xx, and the endpoint recovers with it."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from middleware.broker.topology import queue_name
from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon, Role
from tests.integration.broker_control import (
    require_rabbitmqctl,
    restored,
    stop_broker,
)
from tests.integration.helpers import drain, queue_count, wait_until
from tests.integration.rest_helpers import catch_all_route, endpoint

pytestmark = pytest.mark.integration

JSON = {"Content-Type": "application/json"}
LIMIT = 1024


@pytest.fixture
def hook(
    prefix: str, tmp_path: Path, make_config: Callable[..., LoadedConfig]
) -> Iterator[tuple[str, Daemon]]:
    """An unauthenticated endpoint with a schema, a 1 KiB limit and X-Request-Id dedupe."""
    (tmp_path / "customer.json").write_text(json.dumps({
        "type": "object", "required": ["customer_no"],
        "properties": {"customer_no": {"type": "string"}, "kind": {"type": "string"}}}))
    section = endpoint(prefix, "plain", json_schema="customer.json", max_body_bytes=LIMIT,
                       dedupe={"header": "X-Request-Id"}, derive={
                           "entity": {"path": "kind", "default": "customer"},
                           "action": {"value": "updated"}, "subject": {"path": "customer_no"},
                           "time": {"path": "changed_at"}})
    daemon = Daemon(make_config([catch_all_route(prefix)], inbound=[section]), Role.INGRESS)
    daemon.start()
    assert daemon.ingress is not None
    yield f"http://127.0.0.1:{daemon.ingress.port}{section['path']}", daemon
    daemon.stop()


def _stored(amqp_url: str, prefix: str) -> int:
    return queue_count(amqp_url, queue_name(f"{prefix}-r"))


def _raw(url: str, head: str, chunks: list[bytes]) -> bytes:
    """Send a request head and some body bytes by hand; return what the server answered."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    path = "/" + url.split("//")[1].split("/", 1)[1]
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{head}\r\n".encode())
        for chunk in chunks:
            sock.sendall(chunk)
        answer = b""
        for _ in range(100):  # until the head and the declared body arrived
            answer += sock.recv(65536)
            head, _, body = answer.partition(b"\r\n\r\n")
            length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")]
            if length and len(body) >= length[0]:
                break
        return answer


def test_ingress_malformed_json_is_400_with_position(
    amqp_url: str, prefix: str, hook: tuple[str, Daemon]
) -> None:
    url, _ = hook
    response = httpx.post(url, content=b'{"customer_no": "C-1",\n  "kind": }', headers=JSON)
    assert response.status_code == 400
    answer = response.json()
    assert answer["error"] == "malformed JSON"
    assert (answer["line"], answer["column"], answer["position"]) == (2, 11, 33)
    assert "line 2 column 11" in answer["detail"]
    # a lone surrogate is not valid JSON text either (it could never be re-encoded)
    surrogate = httpx.post(url, content=b'{"customer_no": "\\ud800"}', headers=JSON)
    assert surrogate.status_code == 400
    assert surrogate.json()["position"] > 0
    assert _stored(amqp_url, prefix) == 0


def test_ingress_wrong_content_type_is_415(
    amqp_url: str, prefix: str, hook: tuple[str, Daemon]
) -> None:
    url, _ = hook
    response = httpx.post(url, content=b'{"customer_no": "C-1"}',
                          headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert response.json()["accepted"] == ["application/json"]
    assert _stored(amqp_url, prefix) == 0


def test_ingress_declared_oversize_is_413_before_any_body_is_sent(hook: tuple[str, Daemon]) -> None:
    url, _ = hook
    answer = _raw(url, f"Content-Type: application/json\r\nContent-Length: {LIMIT * 100}\r\n", [])
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    assert b"exceeds 1024 bytes" in answer


def test_ingress_chunked_oversize_is_413_before_the_body_ends(hook: tuple[str, Daemon]) -> None:
    url, _ = hook
    chunk = b"x" * 600
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    # Two chunks (1,200 bytes) pass the 1 KiB limit; the terminating chunk is never sent.
    answer = _raw(url, "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
                  [frame, frame])
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]


def test_ingress_schema_violation_is_422_with_field_path_and_nothing_stored(
    amqp_url: str, prefix: str, hook: tuple[str, Daemon]
) -> None:
    url, _ = hook
    single = httpx.post(url, json={"customer_no": 5}, headers=JSON)
    assert single.status_code == 422
    assert single.json()["path"] == "customer_no"
    # one bad event in a batch refuses the whole batch: the sender resends it fixed
    batch = httpx.post(url, json=[{"customer_no": "C-1"}, {"kind": "lead"}], headers=JSON)
    assert batch.status_code == 422
    assert batch.json()["path"] == "1"
    assert "customer_no" in batch.json()["detail"]
    assert _stored(amqp_url, prefix) == 0


def test_ingress_underivable_event_is_422_naming_the_rule(
    amqp_url: str, prefix: str, hook: tuple[str, Daemon]
) -> None:
    url, _ = hook
    response = httpx.post(url, json=[{"customer_no": "C-1", "changed_at": "2026-01-01T10:00Z"},
                                     {"customer_no": "C-2", "changed_at": "yesterday"}],
                          headers=JSON)
    assert response.status_code == 422
    assert response.json()["path"] == "derive.time"
    assert response.json()["detail"].startswith("event 1 of the batch: cannot derive time")
    assert _stored(amqp_url, prefix) == 0


def test_ingress_batch_is_one_envelope_per_event_with_derived_type(
    amqp_url: str, prefix: str, hook: tuple[str, Daemon]
) -> None:
    url, _ = hook
    response = httpx.post(url, json=[{"customer_no": "C-1"}, {"customer_no": "C-2",
                                                                "kind": "Lead"}], headers=JSON)
    assert response.status_code == 202
    assert wait_until(lambda: _stored(amqp_url, prefix) == 2, 5)
    events = [orjson.loads(body) for _, body in drain(amqp_url, queue_name(f"{prefix}-r"))]
    assert [(e["type"], e["subject"]) for e in events] == [
        (f"{prefix}.customer.updated", "C-1"), (f"{prefix}.lead.updated", "C-2")]
    assert [e["id"] for e in events] == response.json()["ids"]
    assert all(e["source"] == f"{prefix}/{prefix}-plain" for e in events)


def test_ingress_duplicate_delivery_id_is_200_and_not_republished(
    amqp_url: str, prefix: str, hook: tuple[str, Daemon]
) -> None:
    url, _ = hook
    headers = {**JSON, "X-Request-Id": f"{prefix}-req-1"}
    first = httpx.post(url, json={"customer_no": "C-1"}, headers=headers)
    assert first.status_code == 202
    assert first.json()["ids"] == [f"{prefix}-req-1"]
    again = httpx.post(url, json={"customer_no": "C-1"}, headers=headers)
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert wait_until(lambda: _stored(amqp_url, prefix) == 1, 5)
    other = httpx.post(url, json={"customer_no": "C-1"},
                       headers={**JSON, "X-Request-Id": f"{prefix}-req-2"})
    assert other.status_code == 202
    assert wait_until(lambda: _stored(amqp_url, prefix) == 2, 5)


def test_ingress_answers_503_while_broker_is_stopped_and_recovers(
    amqp_url: str, prefix: str, hook: tuple[str, Daemon]
) -> None:
    require_rabbitmqctl()
    url, daemon = hook
    headers = {**JSON, "X-Request-Id": f"{prefix}-during-outage"}
    with restored():
        stop_broker()
        assert wait_until(lambda: not daemon.publisher.connected, 10)
        response = httpx.post(url, json={"customer_no": "C-9"}, headers=headers, timeout=30)
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) > 0
        assert "nothing was stored" in response.json()["detail"]
    assert wait_until(lambda: daemon.publisher.connected, 60)
    # the sender's retry of the same delivery is stored now: the 503 recorded nothing
    retry = httpx.post(url, json={"customer_no": "C-9"}, headers=headers)
    assert retry.status_code == 202
    assert wait_until(lambda: _stored(amqp_url, prefix) == 1, 5)
