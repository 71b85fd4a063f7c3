"""TLS sections of the config: to the broker, to targets, on listeners, client certificates."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from middleware.config.strict import Strict as _Strict
from middleware.tls.names import parse_subject

__all__ = ["ClientCertConfig", "ServerTlsConfig", "TargetTlsConfig", "TlsConfig"]


class TlsConfig(_Strict):
    """TLS to the broker; used when ``broker.url`` starts with ``amqps://``."""

    ca_file: str | None = Field(
        None,
        description="PEM CA bundle that signed the broker's certificate; unset: the system CAs.",
        examples=["/etc/silobridge/tls/broker-ca.pem"],
    )
    cert_file: str | None = Field(
        None,
        description="PEM client certificate for brokers that require one (mutual TLS); may "
        "hold the private key too.",
        examples=["/etc/silobridge/tls/client.pem"],
    )
    key_file: str | None = Field(
        None,
        description="Unencrypted PEM private key of cert_file, when not inside cert_file.",
        examples=["/etc/silobridge/tls/client.key"],
    )
    server_hostname: str | None = Field(
        None,
        description="Name to verify in the broker certificate when it differs from the URL "
        "host (a broker reached by IP address or through a tunnel).",
        examples=["rabbitmq.internal.example.com"],
    )

    @model_validator(mode="after")
    def _key_needs_cert(self) -> TlsConfig:
        if self.key_file and not self.cert_file:
            raise ValueError("key_file is set without cert_file: a client certificate needs "
                             "both (or cert_file alone when it holds the key)")
        return self


class TargetTlsConfig(_Strict):
    """TLS to an HTTPS target or polled API: a private CA and/or a client certificate.

    One model for the REST target, the SOAP target and the poller. Paths are read at start
    (relative to the working directory, like ``broker.tls``), so a wrong path stops the start.
    """

    ca_file: str | None = Field(
        None, description="PEM bundle of the CA(s) that sign the peer's certificate; it "
        "replaces the system trust store for this peer.",
        examples=["/etc/silobridge/tls/erp-ca.pem"],
    )
    cert_file: str | None = Field(
        None, description="Client certificate (PEM, chain allowed) for peers that require "
        "mutual TLS.", examples=["/etc/silobridge/tls/client.pem"],
    )
    key_file: str | None = Field(
        None, description="Private key of cert_file (PEM); omit when cert_file holds it too."
    )

    @model_validator(mode="after")
    def _key_needs_cert(self) -> TargetTlsConfig:
        if self.key_file and not self.cert_file:
            raise ValueError("key_file without cert_file: set cert_file to the client "
                             "certificate that goes with the key")
        return self


class ServerTlsConfig(_Strict):
    """HTTPS on a listener: TLS 1.2 or later, ECDHE with AES-GCM or ChaCha20 only.

    The certificate, key and client CA are read again when their files change (checked every
    ``reload_interval`` seconds), so a renewed certificate is served without a restart; a new
    file that does not load is logged and the previous certificate stays in use.
    """

    cert_file: str = Field(
        description="Server certificate chain (PEM, leaf first).",
        examples=["/etc/silobridge/tls/ingress.pem"],
    )
    key_file: str = Field(
        description="Private key of the certificate (PEM).",
        examples=["/etc/silobridge/tls/ingress-key.pem"],
    )
    client_ca_file: str | None = Field(
        None, description="CA bundle that client certificates must chain to; needed by "
        "endpoints with client_cert (the listener then asks every client for a certificate, "
        "optionally).", examples=["/etc/silobridge/tls/salesforce-ca.pem"],
    )
    reload_interval: float = Field(
        5.0, gt=0, le=3600,
        description="Seconds between checks of the files' modification times.",
    )


class ClientCertConfig(_Strict):
    """Client-certificate authentication of one inbound endpoint (mutual TLS).

    The certificate is verified against ``ingress.tls.client_ca_file`` during the handshake;
    here the endpoint decides whether a verified certificate is needed and which ones it takes.
    With neither list set any certificate that chains to the client CA is accepted.
    """

    required: bool = Field(
        True, description="Refuse requests without a client certificate (403 / Client fault); "
        "false accepts them but still checks a certificate that is presented.",
    )
    allowed_subjects: list[str] = Field(
        default_factory=list,
        description="Subject DNs accepted, in RFC 4514 form (most specific first, as "
        "'openssl x509 -noout -subject -nameopt RFC2253' prints it); compared as names.",
        examples=[["CN=proxy.salesforce.com,O=salesforce.com\\, inc.,L=San Francisco,C=US"]],
    )
    fingerprints: list[str] = Field(
        default_factory=list,
        description="SHA-256 fingerprints of accepted certificates (hex, colons optional).",
        examples=[["50:D8:58:E0:98:5E:CC:7F:60:41:8A:AF:0C:C5:AB:58:"
                   "7F:42:C2:57:0A:88:40:95:A9:E8:CC:AC:D0:F6:54:5C"]],
    )

    @field_validator("allowed_subjects")
    @classmethod
    def _subjects(cls, value: list[str]) -> list[str]:
        for subject in value:
            parse_subject(subject)  # raises ValueError naming the bad DN
        return value

    @field_validator("fingerprints")
    @classmethod
    def _fingerprints(cls, value: list[str]) -> list[str]:
        normalised = [entry.replace(":", "").strip().lower() for entry in value]
        for raw, entry in zip(value, normalised, strict=True):
            if not re.fullmatch(r"[0-9a-f]{64}", entry):
                raise ValueError(f"{raw!r} is not a SHA-256 fingerprint (64 hex digits, colons "
                                 "optional), e.g. from 'openssl x509 -noout -fingerprint "
                                 "-sha256 -in cert.pem'")
        return normalised
