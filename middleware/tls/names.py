"""Certificate identities as configured by operators: subject DNs and SHA-256 fingerprints.

cryptography is imported where a name or certificate is parsed, not with this module: config
validation imports it in every daemon, and few configure client certificates.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509

__all__ = ["CertIdentity", "fingerprint", "identity", "parse_subject"]


def parse_subject(text: str) -> x509.Name:
    """An RFC 4514 DN as a name; ValueError saying how to write it otherwise."""
    from cryptography import x509

    try:
        return x509.Name.from_rfc4514_string(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an RFC 4514 distinguished name; write it as "
            "'openssl x509 -noout -subject -nameopt RFC2253 -in cert.pem' prints it, e.g. "
            "'CN=client.example.com,O=Example,C=DE'") from None


def fingerprint(der: bytes) -> str:
    """SHA-256 of the DER certificate, lowercase hex without separators."""
    return hashlib.sha256(der).hexdigest()


class CertIdentity:
    """What an endpoint compares: the subject as a name and the fingerprint."""

    __slots__ = ("fingerprint", "subject")

    def __init__(self, subject: x509.Name, digest: str) -> None:
        self.subject = subject
        self.fingerprint = digest


@lru_cache(maxsize=256)
def identity(der: bytes) -> CertIdentity:
    """Parsed once per distinct certificate: a client sends the same one on every request."""
    from cryptography import x509

    return CertIdentity(x509.load_der_x509_certificate(der).subject, fingerprint(der))
