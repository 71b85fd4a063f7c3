"""Certificates made by the tests (trustme): a private CA, server and client certificates as
files, and HTTPS servers on loopback that use them."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import trustme
import uvicorn

from middleware.config.models import ServerTlsConfig


class Pki:
    """A private CA whose certificates are written under ``directory``."""

    def __init__(self, directory: Path, name: str = "ca") -> None:
        self.ca = trustme.CA(organization_name=f"silobridge test {name}")
        self.directory = directory
        self.ca_file = str(directory / f"{name}.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)
        self._name = name

    def issue(self, stem: str, *hosts: str, common_name: str | None = None,
              not_after: dt.datetime | None = None, not_before: dt.datetime | None = None,
              ) -> tuple[str, str]:
        """(certificate chain file, key file) of a new leaf certificate."""
        leaf = self.ca.issue_cert(*(hosts or ("127.0.0.1", "localhost")),
                                  common_name=common_name, not_after=not_after,
                                  not_before=not_before)
        cert = self.directory / f"{self._name}-{stem}.pem"
        key = self.directory / f"{self._name}-{stem}-key.pem"
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key))
        return str(cert), str(key)

    def server_tls(self, stem: str = "server", **extra: Any) -> ServerTlsConfig:
        cert, key = self.issue(stem)
        return ServerTlsConfig(cert_file=cert, key_file=key, **extra)


def served_certificate(port: int, ca_file: str) -> bytes:
    """DER of the certificate a TLS server on 127.0.0.1:port presents (verified by ca_file)."""
    context = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def leaf_der(cert_file: str) -> bytes:
    """DER of the first certificate in a PEM file."""
    text = Path(cert_file).read_text()
    end = text.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
    return ssl.PEM_cert_to_DER_cert(text[:end] + "\n")


class HttpsPeer:
    """A plain uvicorn HTTPS server (its own TLS set-up, not silobridge's) on 127.0.0.1.

    With ``client_ca`` it requires a client certificate signed by that CA in the handshake,
    as a target that does mutual TLS would. ``requests`` records (method, path, body).
    """

    def __init__(self, cert: str, key: str, client_ca: str | None = None,
                 answer: tuple[int, bytes, str] = (200, b'{"ok": true}', "application/json"),
                 ) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        self.answer = answer

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            self.requests.append((scope["method"], scope["path"], body))
            status, content, media = self.answer
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", media.encode())]})
            await send({"type": "http.response.body", "body": content})

        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None,
                                lifespan="off", access_log=False, ssl_certfile=cert,
                                ssl_keyfile=key, ssl_ca_certs=client_ca,
                                ssl_cert_reqs=ssl.CERT_REQUIRED if client_ca else ssl.CERT_NONE)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True,
                                        name="https-peer")
        self.port = 0

    def __enter__(self) -> HttpsPeer:
        self._thread.start()
        for _ in range(500):
            if self._server.started:
                break
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"
