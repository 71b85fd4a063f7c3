"""TLS contexts of the ingress and ops listeners, and their reload without a restart.

Protocols and ciphers: TLS 1.2 is the floor; for TLS 1.2 only ECDHE key exchange with AES-GCM
or ChaCha20-Poly1305 is offered (forward secrecy and AEAD; no CBC, SHA-1 MACs, RC4, 3DES, NULL,
export or anonymous suites). TLS 1.3 suites are all AEAD already and keep OpenSSL's defaults.

Reload: uvicorn holds one listening ``SSLContext`` for the life of the server. Loading a new
chain into that live context from another thread would race OpenSSL creating connections from
it on the event loop, and loading it on the loop would block the loop on file reads. So a
watcher thread stats the files every ``reload_interval`` seconds and, when one changed, builds a
complete new context off the loop; the listening context's SNI callback (called during every
handshake, with or without SNI) points the new connection at the newest context, a plain
attribute read. Connections already open keep their certificate. A new set of files that does
not load (half-written, key not matching) is logged and the last good context stays in use; it
is tried again when the files change again.
"""

from __future__ import annotations

import os
import ssl
import threading
from typing import TYPE_CHECKING

import structlog

from middleware.errors import ConfigError, Problem

if TYPE_CHECKING:
    from middleware.config.models import ServerTlsConfig

__all__ = ["STRONG_CIPHERS", "ReloadingContext", "server_context"]

log = structlog.get_logger(__name__)

STRONG_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
"""OpenSSL cipher string of the TLS 1.2 suites offered (TLS 1.3 suites are configured apart)."""

_Stamp = tuple[tuple[int, int, int] | None, ...]


def server_context(config: ServerTlsConfig, *, client_certs: bool) -> ssl.SSLContext:
    """A listening context from the files as they are now; ssl.SSLError / OSError if broken.

    With ``client_certs`` the server asks every client for a certificate (CERT_OPTIONAL): one
    that is sent must chain to ``client_ca_file``, and the endpoints decide who needs one.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(STRONG_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.load_cert_chain(config.cert_file, config.key_file)
    if client_certs:
        if not config.client_ca_file:
            raise ssl.SSLError("client certificates requested without client_ca_file")
        context.load_verify_locations(cafile=config.client_ca_file)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


class ReloadingContext:
    """The listening context of one server and the thread that keeps its certificate fresh."""

    def __init__(self, config: ServerTlsConfig, *, client_certs: bool, name: str,
                 where: str) -> None:
        self._config = config
        self._client_certs = client_certs
        self._name = name
        self._stamp = self._stat()
        try:
            self.context = server_context(config, client_certs=client_certs)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError([Problem(config.cert_file, None, f"{where}.tls",
                                       f"cannot load the TLS certificate, key or client CA: "
                                       f"{exc}; check cert_file, key_file and client_ca_file "
                                       f"(PEM, the key matching the certificate)")]) from exc
        self._current = self.context
        self.context.sni_callback = self._select
        self.reloads = 0
        """Successful reloads so far (logs say when; tests and status read this)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"tls-reload-{name}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _select(self, connection: ssl.SSLObject, _server_name: str | None,
                listening: ssl.SSLContext) -> None:
        """SNI callback on the event loop: no I/O, just the newest context (never raises)."""
        current = self._current
        if current is not listening:
            connection.context = current

    def _files(self) -> list[str]:
        config = self._config
        files = [config.cert_file, config.key_file]
        if self._client_certs and config.client_ca_file:
            files.append(config.client_ca_file)
        return files

    def _stat(self) -> _Stamp:
        stamps: list[tuple[int, int, int] | None] = []
        for path in self._files():
            try:
                found = os.stat(path)
            except OSError:
                stamps.append(None)
            else:
                stamps.append((found.st_mtime_ns, found.st_size, found.st_ino))
        return tuple(stamps)

    def check(self) -> bool:
        """Reload if a file changed since the last attempt; True when a new context is live."""
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        self._stamp = stamp  # a broken set is reported once, and tried again when it changes
        try:
            fresh = server_context(self._config, client_certs=self._client_certs)
        except (OSError, ssl.SSLError) as exc:
            log.error("TLS certificate reload failed; the previous certificate stays in use",
                      server=self._name, cert_file=self._config.cert_file, error=str(exc))
            return False
        self._current = fresh
        self.reloads += 1
        log.info("TLS certificate reloaded", server=self._name,
                 cert_file=self._config.cert_file)
        return True

    def _watch(self) -> None:
        while not self._stop.wait(self._config.reload_interval):
            try:
                self.check()
            except Exception as exc:  # the watcher must outlive any surprise; the cert stays
                log.error("TLS certificate watcher failed", server=self._name, error=str(exc))
