"""TLS of silobridge as a client: contexts for targets and polled APIs, failures explained.

The REST target (aiohttp) and the poller (httpx) take an ``SSLContext``; the SOAP target's
requests session takes the same files as paths, and builds its context from them through
urllib3, so ``target_context`` is also what checks those files at start. Either way a
``ca_file`` replaces the system trust store for that peer (a private CA trusts nothing else).

A handshake that fails reaches the adapters wrapped two or three times (aiohttp connector
errors, httpx/httpcore, requests/urllib3); ``describe_tls_failure`` finds the ``ssl`` error
inside and says what to configure, so a dead letter reads "not trusted ... set tls.ca_file"
rather than "ConnectError".
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from middleware.errors import ConfigError, Problem

if TYPE_CHECKING:
    from middleware.config.models import TargetTlsConfig

__all__ = ["describe_tls_failure", "target_context"]

_REFUSED_BY_PEER = ("CERTIFICATE_REQUIRED", "HANDSHAKE_FAILURE", "BAD_CERTIFICATE",
                    "UNKNOWN_CA", "CERTIFICATE_UNKNOWN", "ACCESS_DENIED")


def target_context(config: TargetTlsConfig | None, where: str) -> ssl.SSLContext:
    """A verifying client context: system CAs or ``ca_file``, plus the client certificate."""
    if config is None:
        return ssl.create_default_context()
    try:
        context = ssl.create_default_context(cafile=config.ca_file)
        if config.cert_file:
            context.load_cert_chain(config.cert_file, config.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([Problem("config", None, f"{where}.tls",
                                   f"cannot load the TLS files: {exc}; ca_file, cert_file and "
                                   f"key_file must be readable PEM files, the key matching "
                                   f"the certificate")]) from exc
    return context


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps (cause, context, exception arguments, ``reason``)."""
    found: list[BaseException] = []
    pending = [exc]
    while pending and len(found) < 32:
        current = pending.pop()
        if any(current is seen for seen in found):
            continue
        found.append(current)
        nested = [current.__cause__, current.__context__, getattr(current, "reason", None),
                  *current.args]
        pending.extend(item for item in nested if isinstance(item, BaseException))
    return found


def describe_tls_failure(exc: BaseException) -> str | None:
    """What went wrong in a TLS handshake and what to set, or None if it was not TLS."""
    chain = _causes(exc)
    # aiohttp's certificate error subclasses SSLCertVerificationError without its fields
    verify = [item for item in chain if isinstance(item, ssl.SSLCertVerificationError)]
    if verify:
        why = next((str(item.verify_message) for item in verify
                    if getattr(item, "verify_message", None)), str(verify[0]))
        return (f"the peer's TLS certificate was not accepted ({why}); if a private CA "
                f"signed it, set tls.ca_file to that CA")
    for item in chain:
        if isinstance(item, ssl.SSLError):
            reason = str(item.reason or item)
            if isinstance(item, ssl.SSLEOFError) or any(
                    word in reason.upper() for word in _REFUSED_BY_PEER):
                return (f"the peer refused the TLS handshake ({reason}); if it requires a "
                        f"client certificate, set tls.cert_file and tls.key_file")
            return f"the TLS handshake failed ({reason})"
    return None
