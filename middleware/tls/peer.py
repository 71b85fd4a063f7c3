"""The client certificate of a request, and the per-endpoint rule that accepts it.

uvicorn does not put TLS details into the ASGI scope, and Starlette cannot reach the transport.
``with_peer_certificate`` therefore derives a subclass of uvicorn's httptools protocol that
reads the peer certificate once per connection (``connection_made`` runs after the handshake,
so the certificate is final; renegotiation is off) and adds it to every request's scope as
``scope["extensions"]["tls"]``, the key the ASGI TLS extension defines. Of that extension we
fill ``client_cert_chain`` (the leaf only: Python 3.11 exposes no verified chain),
``client_cert_name`` (RFC 4514), ``client_cert_error`` (always None: with CERT_OPTIONAL a
certificate that does not verify fails the handshake, so none reaches a request) and
``tls_version``.

``ClientCertCheck`` is what an endpoint with ``client_cert`` runs first: it says why a request
is refused, or None. The REST endpoint answers that with 403, the SOAP endpoints with a Client
fault (HTTP 403).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from middleware.tls.names import identity, parse_subject

if TYPE_CHECKING:
    from middleware.config.models import ClientCertConfig

__all__ = ["ClientCertCheck", "peer_certificate", "with_peer_certificate"]

_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def _tls_extension(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    connection = transport.get_extra_info("ssl_object")
    if not isinstance(connection, ssl.SSLObject):
        return None
    der = connection.getpeercert(binary_form=True)
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": identity(der).subject.rfc4514_string() if der else None,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(connection.version() or ""),
        "cipher_suite": None,
    }


def with_peer_certificate(base: type[HttpToolsProtocol]) -> type[HttpToolsProtocol]:
    """``base`` with the ASGI TLS extension in each request scope (see module docstring).

    A function rather than a fixed class so it composes with other protocol subclasses
    (limits, timeouts) instead of competing with them for uvicorn's ``http`` setting.
    """
    # cryptography parses the client certificate in connection_made, on the server's event
    # loop; imported here, as the HTTPS server is built, the first client does not pay for it
    import cryptography.x509  # noqa: F401

    class PeerCertificateProtocol(base):  # type: ignore[valid-type,misc]
        _tls: dict[str, Any] | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._tls = _tls_extension(transport)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._tls is not None:
                self.scope["extensions"] = {"tls": self._tls}

    PeerCertificateProtocol.__name__ = f"PeerCertificate{base.__name__}"
    return PeerCertificateProtocol


def peer_certificate(scope: Mapping[str, Any]) -> bytes | None:
    """DER of the verified client certificate of this request, if one was presented."""
    tls = (scope.get("extensions") or {}).get("tls")
    chain = tls.get("client_cert_chain") if tls else None
    return ssl.PEM_cert_to_DER_cert(chain[0]) if chain else None


class ClientCertCheck:
    """One endpoint's ``client_cert`` rule, compiled."""

    def __init__(self, config: ClientCertConfig) -> None:
        self._required = config.required
        self._subjects = {parse_subject(subject) for subject in config.allowed_subjects}
        self._fingerprints = frozenset(config.fingerprints)

    def refusal(self, scope: Mapping[str, Any]) -> str | None:
        """Why this request may not use the endpoint (for the sender), or None."""
        der = peer_certificate(scope)
        if der is None:
            if not self._required:
                return None
            return ("this endpoint requires a client certificate signed by the CA configured "
                    "in ingress.tls.client_ca_file; none was presented")
        if not self._subjects and not self._fingerprints:
            return None
        found = identity(der)
        if found.fingerprint in self._fingerprints or found.subject in self._subjects:
            return None
        return (f"the client certificate {found.subject.rfc4514_string()!r} (SHA-256 "
                f"{found.fingerprint}) is not allowed on this endpoint; its subject or "
                f"fingerprint must be listed in the endpoint's client_cert")
