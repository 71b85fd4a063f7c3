"""TLS for silobridge's own listeners and for its HTTPS clients.

    server.py   listener contexts (TLS 1.2+, ECDHE + AEAD ciphers) and their hot reload
    peer.py     the client certificate in the ASGI scope, and per-endpoint checks of it
    client.py   contexts for targets and polled APIs; TLS failures explained
    names.py    subject names and fingerprints (pure)
"""

from middleware.tls.client import describe_tls_failure, target_context
from middleware.tls.names import fingerprint, parse_subject
from middleware.tls.peer import ClientCertCheck, with_peer_certificate
from middleware.tls.server import STRONG_CIPHERS, ReloadingContext, server_context

__all__ = [
    "STRONG_CIPHERS",
    "ClientCertCheck",
    "ReloadingContext",
    "describe_tls_failure",
    "fingerprint",
    "parse_subject",
    "server_context",
    "target_context",
    "with_peer_certificate",
]
