"""The config fields every inbound endpoint on the ingress has, whatever its protocol.

REST, SOAP and Salesforce endpoints (and the next protocol) subclass ``EndpointConfig``, so a
path, a size limit, Retry-After, client certificates and the envelope source mean the same and
are documented once; a subclass may narrow a default (Salesforce allows larger bodies).
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from middleware.adapter import AdapterConfig
from middleware.config.models import ClientCertConfig

__all__ = ["EndpointConfig"]

_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_WORD = r"^[a-z0-9_-]+$"


class EndpointConfig(AdapterConfig):
    """What every inbound endpoint on the shared ingress has."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        pattern=_NAME, description="Endpoint name; labels metrics and namespaces dedupe ids."
    )
    path: str = Field(
        pattern=r"^/[A-Za-z0-9_./-]*$",
        description="URL path on the ingress (a SOAP endpoint serves its WSDL at <path>?wsdl).",
        examples=["/webhooks/shopify/orders"],
    )
    system: str = Field(
        pattern=_WORD, description="First word of the event type: 'crm' in crm.customer.updated."
    )
    source: str | None = Field(
        None, description="Envelope source; default '<system>/<name>'.", examples=["crm/shopify"]
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1, le=64 * 1_048_576,
        description="Larger bodies are refused unread: HTTP 413 (for SOAP with a Client fault).",
    )
    retry_after: int = Field(
        10, ge=1, description="Seconds in Retry-After when a request could not be stored "
        "(broker or dedupe store unavailable, a copy of it in progress): HTTP 503, for SOAP a "
        "Server fault.",
    )
    client_cert: ClientCertConfig | None = Field(
        None, description="Require a client certificate (mutual TLS; needs ingress.tls with "
        "client_ca_file) and optionally restrict it by subject or fingerprint.",
        examples=[{"required": True, "allowed_subjects": ["CN=crm.example.com,O=Example"]}],
    )

    @property
    def envelope_source(self) -> str:
        """The envelope ``source`` of this endpoint's events."""
        return self.source or f"{self.system}/{self.name}"
