"""silobridge's HTTPS listeners on loopback (no broker needed): an sslyze scan of the protocol
versions and cipher suites, verifying clients refusing wrong and expired certificates, the
peer certificate reaching the request, and a renewed certificate served without a restart."""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sslyze import (
    ScanCommand,
    ScanCommandAttemptStatusEnum,
    Scanner,
    ServerNetworkLocation,
    ServerScanRequest,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from middleware.config.models import ServerTlsConfig
from middleware.http import ServerThread
from tests.integration.helpers import wait_until
from tests.tls_helpers import Pki, leaf_der, served_certificate

_PROTOCOLS = {
    ScanCommand.SSL_2_0_CIPHER_SUITES: "ssl_2_0_cipher_suites",
    ScanCommand.SSL_3_0_CIPHER_SUITES: "ssl_3_0_cipher_suites",
    ScanCommand.TLS_1_0_CIPHER_SUITES: "tls_1_0_cipher_suites",
    ScanCommand.TLS_1_1_CIPHER_SUITES: "tls_1_1_cipher_suites",
    ScanCommand.TLS_1_2_CIPHER_SUITES: "tls_1_2_cipher_suites",
    ScanCommand.TLS_1_3_CIPHER_SUITES: "tls_1_3_cipher_suites",
}


async def _whoami(request: Request) -> JSONResponse:
    tls = request.scope.get("extensions", {}).get("tls") or {}
    return JSONResponse({"client": tls.get("client_cert_name"),
                         "version": tls.get("tls_version")})


@contextmanager
def _listener(tls: ServerTlsConfig, client_certs: bool = False) -> Iterator[ServerThread]:
    server = ServerThread(Starlette(routes=[Route("/whoami", _whoami)]), "127.0.0.1", 0,
                          "tls-test", tls=tls, client_certs=client_certs)
    server.start_and_wait()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def test_tls_listener_sslyze_scan_finds_nothing_below_tls12_and_no_weak_suite(pki: Pki) -> None:
    with _listener(pki.server_tls()) as server:
        request = ServerScanRequest(
            server_location=ServerNetworkLocation("127.0.0.1", server.port,
                                                  ip_address="127.0.0.1"),
            scan_commands=set(_PROTOCOLS))
        scanner = Scanner()
        scanner.queue_scans([request])
        [result] = list(scanner.get_results())
    assert result.scan_result is not None, result.connectivity_error_trace
    accepted: dict[str, list[str]] = {}
    for name in _PROTOCOLS.values():
        attempt = getattr(result.scan_result, name)
        assert attempt.status is ScanCommandAttemptStatusEnum.COMPLETED, (name, attempt)
        accepted[name] = [s.cipher_suite.name for s in attempt.result.accepted_cipher_suites]
    for old in ("ssl_2_0_cipher_suites", "ssl_3_0_cipher_suites", "tls_1_0_cipher_suites",
                "tls_1_1_cipher_suites"):
        assert accepted[old] == [], (old, accepted[old])
    assert accepted["tls_1_2_cipher_suites"], "TLS 1.2 must still be offered"
    for suite in accepted["tls_1_2_cipher_suites"]:
        assert suite.startswith("TLS_ECDHE_") and ("_GCM_" in suite or "CHACHA20" in suite), \
            suite
    assert set(accepted["tls_1_3_cipher_suites"]) <= {
        "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
    assert accepted["tls_1_3_cipher_suites"]


def test_tls_listener_is_refused_by_a_client_trusting_another_ca(
    pki: Pki, tmp_path: Path
) -> None:
    stranger = Pki(tmp_path, "stranger")
    with _listener(pki.server_tls()) as server:
        url = f"https://127.0.0.1:{server.port}/whoami"
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(url, verify=ssl.create_default_context(cafile=stranger.ca_file))
        answer = httpx.get(url, verify=ssl.create_default_context(cafile=pki.ca_file))
    assert answer.json() == {"client": None, "version": 0x0304}


def test_tls_listener_with_an_expired_certificate_is_refused_by_a_verifying_client(
    pki: Pki
) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    cert, key = pki.issue("expired", not_before=past, not_after=past + dt.timedelta(days=1))
    with (_listener(ServerTlsConfig(cert_file=cert, key_file=key)) as server,
          pytest.raises(httpx.ConnectError, match="certificate has expired")):
        httpx.get(f"https://127.0.0.1:{server.port}/whoami",
                  verify=ssl.create_default_context(cafile=pki.ca_file))


def test_tls_listener_passes_the_verified_client_certificate_to_the_request(
    pki: Pki, tmp_path: Path
) -> None:
    clients, stranger = Pki(tmp_path, "clients"), Pki(tmp_path, "stranger")
    cert, key = clients.issue("crm", "crm.example.com", common_name="crm.example.com")
    bad_cert, bad_key = stranger.issue("crm", "crm.example.com", common_name="crm.example.com")
    tls = pki.server_tls(client_ca_file=clients.ca_file)
    with _listener(tls, client_certs=True) as server:
        url = f"https://127.0.0.1:{server.port}/whoami"

        def call(*chain: str) -> httpx.Response:
            context = ssl.create_default_context(cafile=pki.ca_file)
            if chain:
                context.load_cert_chain(*chain)
            return httpx.get(url, verify=context)

        assert call(cert, key).json()["client"].startswith("CN=crm.example.com,")
        assert call().json()["client"] is None  # optional at the listener; endpoints decide
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            call(bad_cert, bad_key)  # a certificate from another CA fails the handshake


def test_tls_listener_serves_a_renewed_certificate_without_restart_and_survives_a_bad_one(
    pki: Pki
) -> None:
    tls = pki.server_tls(reload_interval=0.2)
    with _listener(tls) as server:
        assert served_certificate(server.port, pki.ca_file) == leaf_der(tls.cert_file)
        # When cert-manager writes the renewed certificate and key
        new_cert, new_key = pki.issue("renewed")
        Path(tls.key_file).write_bytes(Path(new_key).read_bytes())
        Path(tls.cert_file).write_bytes(Path(new_cert).read_bytes())
        # Then new connections get it within a few reload intervals
        assert wait_until(lambda: served_certificate(server.port, pki.ca_file)
                          == leaf_der(new_cert), 5)
        # When a broken file replaces it, the renewed certificate stays in use
        Path(tls.cert_file).write_text("-----BEGIN CERTIFICATE-----\ngarbage\n")
        assert server.tls is not None
        reloads = server.tls.reloads
        wait_until(lambda: False, 1.0)  # several reload intervals
        assert server.tls.reloads == reloads
        assert served_certificate(server.port, pki.ca_file) == leaf_der(new_cert)
