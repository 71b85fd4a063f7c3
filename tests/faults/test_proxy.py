"""The fault proxy's own toxics, against an echo server on loopback: each does what it says."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from tests.faults.proxy import FaultProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        with contextlib.suppress(ConnectionResetError):  # the reset toxics reset it
            while data := self.request.recv(65536):
                self.request.sendall(data)


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with FaultProxy(server.server_address[1]) as proxy:
        yield proxy
    server.shutdown()
    server.server_close()


def _client(proxy: FaultProxy, timeout: float = 2.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)
    return sock


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        data = sock.recv(n - len(out))
        if not data:
            break
        out += data
    return out


def test_proxy_forwards_both_ways(proxy: FaultProxy) -> None:
    with _client(proxy) as sock:
        sock.sendall(b"hello")
        assert _recv_exactly(sock, 5) == b"hello"
    assert proxy.accepted == 1


def test_proxy_blackhole_holds_bytes_without_closing_and_heal_releases_them(
    proxy: FaultProxy,
) -> None:
    with _client(proxy, timeout=0.5) as sock:
        sock.sendall(b"a")
        assert _recv_exactly(sock, 1) == b"a"
        proxy.blackhole()
        sock.sendall(b"b")
        # no answer, and no FIN (recv would return b"") nor RST (it would raise a reset)
        with pytest.raises(TimeoutError):
            sock.recv(1)
        proxy.heal()
        sock.settimeout(2)
        assert _recv_exactly(sock, 1) == b"b"


def test_proxy_blackhole_applies_to_new_connections(proxy: FaultProxy) -> None:
    proxy.blackhole()
    with _client(proxy, timeout=0.5) as sock:  # the TCP handshake still succeeds
        sock.sendall(b"x")
        with pytest.raises(TimeoutError):
            sock.recv(1)


def test_proxy_latency_delays_each_direction(proxy: FaultProxy) -> None:
    proxy.latency(0.3)
    with _client(proxy) as sock:
        began = time.monotonic()
        sock.sendall(b"ping")
        assert _recv_exactly(sock, 4) == b"ping"
        assert time.monotonic() - began >= 0.6  # 0.3 s there, 0.3 s back


def test_proxy_latency_keeps_chunks_pipelined(proxy: FaultProxy) -> None:
    proxy.latency(0.3)
    with _client(proxy) as sock:
        began = time.monotonic()
        for _ in range(10):
            sock.sendall(b"x")
            time.sleep(0.02)
        assert _recv_exactly(sock, 10) == b"x" * 10
        assert time.monotonic() - began < 1.5  # not 10 x 0.6 s


def test_proxy_bandwidth_caps_throughput(proxy: FaultProxy) -> None:
    proxy.bandwidth(40_000)
    payload = b"z" * 40_000
    with _client(proxy, timeout=10) as sock:
        began = time.monotonic()
        sock.sendall(payload)
        assert _recv_exactly(sock, len(payload)) == payload
        # capped in both directions: at least ~1 s for 40 kB each way, pipelined
        assert time.monotonic() - began >= 0.9


def test_proxy_cut_after_resets_in_the_middle(proxy: FaultProxy) -> None:
    with _client(proxy) as sock:
        sock.sendall(b"0")
        assert _recv_exactly(sock, 1) == b"0"
        assert proxy.cut_after(3, "downstream", "reset") == 1
        sock.sendall(b"12345678")
        got = b""
        with pytest.raises(ConnectionResetError):
            while data := sock.recv(100):
                got += data
        assert got == b"123"
    assert proxy.cuts == 1 and proxy.open == 0


def test_proxy_cut_armed_with_no_connection_open_hits_the_next_one_once(proxy: FaultProxy) -> None:
    # Given a cut armed while the client is between connections (reconnecting)
    assert proxy.cut_after(3, "downstream", "reset") == 0
    with _client(proxy) as sock:
        sock.sendall(b"12345678")
        got = b""
        with pytest.raises(ConnectionResetError):
            while data := sock.recv(100):
                got += data
        assert got == b"123"
    # and once it fired, the next connection is left alone
    with _client(proxy) as sock:
        sock.sendall(b"12345678")
        assert _recv_exactly(sock, 8) == b"12345678"
    assert proxy.cuts == 1


def test_proxy_cut_after_close_ends_with_a_fin(proxy: FaultProxy) -> None:
    with _client(proxy) as sock:
        sock.sendall(b"0")
        _recv_exactly(sock, 1)
        proxy.cut_after(4, "downstream", "close")
        sock.sendall(b"abcdefgh")
        assert _recv_exactly(sock, 100) == b"abcd"  # then EOF, no reset


def test_proxy_cut_after_stall_stops_forwarding_but_keeps_the_socket(proxy: FaultProxy) -> None:
    with _client(proxy, timeout=0.5) as sock:
        sock.sendall(b"0")
        _recv_exactly(sock, 1)
        proxy.cut_after(2, "downstream", "stall")
        sock.sendall(b"abcdef")
        assert _recv_exactly(sock, 2) == b"ab"
        with pytest.raises(TimeoutError):
            sock.recv(1)
        assert proxy.open == 1


def test_proxy_refuse_rejects_new_connections_and_heal_listens_again(
    proxy: FaultProxy,
) -> None:
    with _client(proxy) as old:
        old.sendall(b"0")  # accepted by the proxy, not only by the kernel's backlog
        _recv_exactly(old, 1)
        proxy.refuse()
        with pytest.raises(ConnectionRefusedError):
            _client(proxy)
        old.sendall(b"still")  # an open connection is not touched
        assert _recv_exactly(old, 5) == b"still"
        proxy.heal()
        with _client(proxy) as new:
            new.sendall(b"again")
            assert _recv_exactly(new, 5) == b"again"


def test_proxy_reset_all_resets_open_connections(proxy: FaultProxy) -> None:
    with _client(proxy) as sock:
        sock.sendall(b"0")
        _recv_exactly(sock, 1)
        assert proxy.reset_all() == 1
        with pytest.raises(ConnectionResetError):
            sock.sendall(b"x")
            sock.recv(1)


def test_proxy_bandwidth_switched_on_mid_connection_caps_the_next_chunk(
    proxy: FaultProxy,
) -> None:
    with _client(proxy, timeout=10) as sock:
        sock.sendall(b"warm")
        assert _recv_exactly(sock, 4) == b"warm"  # both pumps now wait in a large read
        proxy.bandwidth(2000)
        began = time.monotonic()
        sock.sendall(b"y" * 3000)
        assert _recv_exactly(sock, 3000) == b"y" * 3000
        assert time.monotonic() - began >= 1.4  # 3000 bytes at 2000 B/s, not one write
