"""Request heads are bounded on both listeners: size (431) and time (slowloris), on real servers.

No broker needed: the ingress here serves a plain recording route, the ops listener the real
ops app, each under ``ServerThread`` on 127.0.0.1, spoken to through raw sockets so a test
controls every byte and its timing.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import REGISTRY
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from middleware.config.models import HttpLimits, IngressConfig
from middleware.health import ops_app
from middleware.http import ServerThread
from middleware.ingress import Ingress

LIMITS = HttpLimits(max_header_bytes=8192, max_head_bytes=32768, max_headers=100,
                    header_timeout=1.0)

Listener = tuple[str, int, list[str]]  # name, port, paths the endpoint was called for


@pytest.fixture(params=["ingress", "ops"])
def listener(request: pytest.FixtureRequest) -> Iterator[Listener]:
    """The ingress with one recording route, or the ops listener, with LIMITS."""
    calls: list[str] = []
    if request.param == "ingress":
        async def hook(req: Request) -> Response:
            calls.append(req.url.path)
            return JSONResponse({"ok": True})

        ingress = Ingress(IngressConfig(port=0, http=LIMITS))
        ingress.add_route("/hook", hook, ["GET", "POST"], "limits-hook")
        ingress.start()
        yield "ingress", ingress.port, calls
        ingress.stop()
    else:
        def checks() -> dict[str, bool]:
            calls.append("/readyz")
            return {"ok": True}

        server = ServerThread(ops_app(checks), "127.0.0.1", 0, "ops", limits=LIMITS)
        server.start_and_wait()
        yield "ops", server.port, calls
        server.stop()


def _path(name: str) -> str:
    return "/hook" if name == "ingress" else "/readyz"


def _rejected(listener: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "silobridge_rejected_total", {"endpoint": listener, "adapter": "http", "reason": reason})
    return value or 0.0


def _exchange(port: int, head: bytes, timeout: float = 5.0) -> bytes:
    """Send *head* (tolerating the server closing early) and read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            for start in range(0, len(head), 16384):
                sock.sendall(head[start:start + 16384])
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before we finished: the answer is still there to read
        return _read_to_close(sock)


def _read_to_close(sock: socket.socket) -> bytes:
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    return answer


def _request(path: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{n}: {v}" for n, v in headers),
             "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _status_and_json(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def _refused_431(listener: Listener, headers: list[tuple[str, str]]) -> dict[str, object]:
    name, port, calls = listener
    before = _rejected(name, "header_too_large")
    status, document = _status_and_json(_exchange(port, _request(_path(name), headers)))
    assert status == 431
    assert calls == []  # refused before any endpoint work
    assert _rejected(name, "header_too_large") == before + 1
    return document


def test_http_one_huge_header_is_431(listener: Listener) -> None:
    document = _refused_431(listener, [("Content-Type", "application/json; " + "a-" * 10_000)])
    assert document["limit"] == 8192
    detail = str(document["detail"])
    assert "'Content-Type' has 20030 bytes" in detail and "max_header_bytes" in detail


def test_http_many_headers_is_431(listener: Listener) -> None:
    document = _refused_431(listener, [(f"X-H{i}", "v") for i in range(150)])
    assert document["limit"] == 100
    assert "more than 100 header lines" in str(document["detail"])


def test_http_large_head_of_allowed_headers_is_431(listener: Listener) -> None:
    # Given headers each under the per-header limit, together over the 32 KiB head limit
    document = _refused_431(listener, [(f"X-H{i}", "v" * 8000) for i in range(5)])
    assert document["limit"] == 32768
    assert "max_head_bytes" in str(document["detail"])


def test_http_megabyte_header_is_431_without_reading_it(listener: Listener) -> None:
    name, port, calls = listener
    head = _request(_path(name), [("X-Big", "b" * (1 << 20))])
    status, document = _status_and_json(_exchange(port, head))
    assert status == 431 and document["limit"] == 32768
    assert calls == []


def test_http_heads_within_the_limits_are_served(listener: Listener) -> None:
    name, port, calls = listener
    headers = [(f"X-H{i}", "v") for i in range(90)] + [("X-Big", "b" * 8000)]
    answer = _exchange(port, _request(_path(name), headers))
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert calls == [_path(name)]


def _slowloris(port: int, send: Callable[[socket.socket], None]) -> tuple[float, bytes]:
    """Drip a head a byte every 0.1 s until the server closes; (seconds open, answer)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        send(sock)
        sock.setblocking(False)
        answer = b""
        for _ in range(200):  # 20 s at most: far beyond the 1 s timeout
            try:
                sock.send(b"a")
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.1)
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                break
            answer += chunk
            if not chunk:
                break
        else:
            pytest.fail("still connected after dripping a head for 20 s")
        return time.monotonic() - started, answer


def test_http_slowloris_head_is_cut_off_after_header_timeout(listener: Listener) -> None:
    name, port, calls = listener
    before = _rejected(name, "header_timeout")

    def start(sock: socket.socket) -> None:
        sock.sendall(f"GET {_path(name)} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".encode())

    seconds, answer = _slowloris(port, start)
    assert 0.9 <= seconds < 5.0
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"header_timeout" in answer
    assert calls == []
    assert _rejected(name, "header_timeout") == before + 1


def test_http_slowloris_on_a_kept_alive_connection_is_cut_off(listener: Listener) -> None:
    name, port, calls = listener

    def first_request_then_drip(sock: socket.socket) -> None:
        sock.sendall(f"GET {_path(name)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 ")
        time.sleep(1.5)  # idle longer than header_timeout: only a started head is timed
        sock.sendall(f"GET {_path(name)} HTTP/1.1\r\nX-Slow: ".encode())

    seconds, answer = _slowloris(port, first_request_then_drip)
    assert seconds < 1.5 + 5.0
    assert b"408 Request Timeout" in answer
    assert calls == [_path(name)]


def test_http_silent_connection_is_closed_after_header_timeout(listener: Listener) -> None:
    _name, port, _calls = listener
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        assert _read_to_close(sock) == b""  # nothing to answer: closed without a word
    assert 0.9 <= time.monotonic() - started < 5.0
