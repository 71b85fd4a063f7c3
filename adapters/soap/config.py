"""Config of the SOAP adapters: the models are the reference (every field is described).

Inbound SOAP endpoint built from a WSDL (``inbound[*]``, ``type: soap``)::

    - type: soap
      name: erp-shipments
      path: /soap/shipments
      public_url: https://soap.example.com/soap/shipments   # the served WSDL's soap:address
      wsdl: wsdl/shipments.wsdl
      system: erp
      auth: {scheme: wsse, username: erp, password_env: ERP_SOAP_PASSWORD}   # or scheme: basic
      operations:
        ReportShipment:
          each: Shipments.Shipment          # one event per list item (optional)
          derive:
            entity: {value: shipment}
            action: {value: reported}
            subject: {path: OrderNo}
            id: {path: ShipmentId}            # a source id makes resends dedupe
          reply: {Accepted: true}

Salesforce Outbound Messaging (``inbound[*]``, ``type: salesforce-om``)::

    - type: salesforce-om
      name: sf-accounts
      path: /soap/salesforce/accounts
      wsdl: wsdl/salesforce-account-outbound.wsdl   # the WSDL Salesforce generated
      organization_id: ${SF_ORG_ID}

Outbound through zeep (``routes[*].target``, ``type: soap``)::

    target:
      type: soap
      wsdl: wsdl/demo-erp.wsdl
      operation: CreateSalesOrder
      address: http://127.0.0.1:8090/soap
      idempotency: {argument: RequestId}
      wsse: {username: silobridge, password_env: ERP_PASSWORD, digest: true}
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from adapters._derive import Derive
from middleware.adapter import AdapterConfig
from middleware.config.models import TargetTlsConfig
from middleware.ingress.config import EndpointConfig
from middleware.secrets import SecretFields

__all__ = [
    "BasicCredentials",
    "BasicInboundAuth",
    "IdempotencyKey",
    "SalesforceConfig",
    "SoapClientConfig",
    "SoapEndpointBase",
    "SoapEndpointConfig",
    "SoapInboundAuth",
    "SoapOperationConfig",
    "SoapSystemConfig",
    "SoapTargetConfig",
    "WsseCredentials",
    "WsseInboundAuth",
]

_WORD = r"^[a-z0-9_-]+$"
_ORG_ID = r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _InboundPassword(_Strict, SecretFields):
    """The password senders must present, from the environment or a file."""

    username: str = Field(min_length=1, max_length=256, description="Expected user name.")
    password_env: str | None = Field(
        None, description="Environment variable holding the password; or use password_file.",
        examples=["SOAP_INBOUND_PASSWORD"])
    password_file: str | None = Field(
        None, description="File holding the password (relative to the config file); instead "
        "of password_env.", examples=["/run/secrets/silobridge/soap-inbound-password"])


class WsseInboundAuth(_InboundPassword):
    """Senders authenticate with a WS-Security UsernameToken in the SOAP header."""

    scheme: Literal["wsse"] = Field(description="WS-Security UsernameToken (SOAP header).")
    password_type: Literal["digest", "text", "any"] = Field(
        "any", description="Password forms accepted: PasswordDigest (SHA-1 of nonce, created "
        "and password; never shows the password), PasswordText (only over TLS), or either.",
    )
    max_age: int = Field(
        300, ge=10, le=3600,
        description="Seconds a token's Created may lie before or after our clock; a digest "
        "needs Created, and its Nonce is refused a second time for twice this long.",
    )
    nonce_cache_size: int = Field(
        100_000, ge=100, le=10_000_000,
        description="Digest nonces remembered per endpoint to refuse replays; when this many "
        "are still within their window, further requests get a retryable Server fault.",
    )


class BasicInboundAuth(_InboundPassword):
    """Senders authenticate with HTTP basic (e.g. credentials in the Salesforce endpoint URL)."""

    scheme: Literal["basic"] = Field(description="HTTP basic authentication.")
    realm: str = Field("silobridge", pattern=r'^[^"\\]{1,64}$',
                       description="Realm named in the WWW-Authenticate challenge.")


SoapInboundAuth = Annotated[WsseInboundAuth | BasicInboundAuth, Field(discriminator="scheme")]


class SoapEndpointBase(EndpointConfig):
    """What every SOAP endpoint on the ingress has (beyond EndpointConfig)."""

    max_depth: int = Field(64, ge=4, le=256, description="Deepest element nesting accepted.")
    auth: SoapInboundAuth | None = Field(
        None, description="How senders authenticate (scheme wsse or basic); none by default.",
        examples=[{"scheme": "wsse", "username": "erp", "password_env": "ERP_SOAP_PASSWORD"}],
    )
    public_url: str | None = Field(
        None, description="The URL senders call this endpoint at (behind proxies and TLS "
        "terminators); the WSDL served at ?wsdl names it as every soap:address. Without it "
        "the WSDL is served with the addresses its file holds.",
        examples=["https://soap.example.com/soap/erp/shipments"],
    )

    @field_validator("public_url")
    @classmethod
    def _absolute_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("public_url must be an absolute http(s) URL, e.g. "
                             "https://soap.example.com/soap/erp/shipments")
        if parts.query or parts.fragment:
            raise ValueError("public_url must have no query or fragment")
        return value


class SoapOperationConfig(_Strict):
    """How requests of one WSDL operation become events."""

    derive: Derive = Field(description="Entity, action, subject, time and id of each event.")
    each: str | None = Field(
        None, description="Dotted path of a list in the request: one event per item.",
        examples=["Shipments.Shipment"],
    )
    reply: dict[str, Any] = Field(
        default_factory=dict,
        description="Values of the response element the WSDL declares; the string '{count}' "
        "becomes the number of events accepted.",
        examples=[{"Accepted": True}],
    )


class SoapEndpointConfig(SoapEndpointBase):
    """A SOAP endpoint generated from a local WSDL: document/literal, SOAP 1.1 and 1.2."""

    type: Literal["soap"] = Field("soap", description="Selects this adapter.")
    wsdl: str = Field(description="Local WSDL file (relative to the config file).",
                      examples=["wsdl/shipments.wsdl"])
    operations: dict[str, SoapOperationConfig] = Field(
        min_length=1,
        description="WSDL operations accepted, by name; requests for others get a Client fault.",
    )


class SalesforceConfig(SoapEndpointBase):
    """The receiving end of Salesforce Outbound Messaging (workflow / flow notifications)."""

    type: Literal["salesforce-om"] = Field("salesforce-om", description="Selects this adapter.")
    organization_id: str = Field(
        pattern=_ORG_ID,
        description="The org whose messages are accepted (15 or 18 characters, compared as the "
        "case-safe 18-character id); others get a Fault and nothing is stored.",
        examples=["${SF_ORG_ID}"],
    )
    wsdl: str | None = Field(
        None, description="The WSDL Salesforce generated for the outbound message, served at "
        "?wsdl (relative to the config file).",
    )
    system: str = Field("crm", pattern=_WORD, description="First word of the event type.")
    source: str | None = Field("crm/salesforce", description="Envelope source.")
    entity: str | None = Field(
        None, pattern=_WORD,
        description="Entity word of the event type; default the sObject type ('account').",
    )
    action: str = Field("updated", pattern=_WORD, description="Action word of the event type.")
    subject_field: str = Field("Id", description="sObject field that becomes the subject.")
    time_field: str = Field(
        "LastModifiedDate", description="sObject field that becomes the event time (else now)."
    )
    max_body_bytes: int = Field(
        4 * 1_048_576, ge=1, le=64 * 1_048_576,
        description="Larger bodies are refused unread with a Client fault (HTTP 413); "
        "Salesforce sends up to 100 notifications per message.",
    )


class WsseCredentials(_Strict, SecretFields):
    """WS-Security UsernameToken in the SOAP header."""

    username: str = Field(description="User name.")
    password_env: str | None = Field(
        None, description="Environment variable holding the password; or use password_file.",
        examples=["ERP_PASSWORD"])
    password_file: str | None = Field(
        None, description="File holding the password (relative to the config file); instead "
        "of password_env.", examples=["/run/secrets/silobridge/erp-password"])
    digest: bool = Field(
        False, description="Send PasswordDigest (with nonce and created) instead of PasswordText."
    )


class BasicCredentials(_Strict, SecretFields):
    """HTTP basic authentication."""

    username: str = Field(description="User name.")
    password_env: str | None = Field(
        None, description="Environment variable holding the password; or use password_file.")
    password_file: str | None = Field(
        None, description="File holding the password (relative to the config file); instead "
        "of password_env.")


class IdempotencyKey(_Strict):
    """Where the envelope id goes, so the target can recognise a resend."""

    argument: str | None = Field(
        None, description="Operation argument set to the envelope id (unless the mapping set it).",
        examples=["RequestId"],
    )
    header: str | None = Field(
        "Idempotency-Key", description="HTTP header carrying the envelope id; null for none."
    )


def idempotency_advice(config: SoapTargetConfig) -> list[str]:
    """A warning when the envelope id does not travel inside the SOAP message.

    Only an operation argument reaches the service for sure; an HTTP header is dropped or
    ignored by most SOAP stacks (NAV's among them), and without a key a redelivery after a lost
    answer creates a second record. Nothing in the config can fix that when the WSDL has no
    request-id argument, so it is said, not refused.
    """
    key = config.idempotency
    if key.argument is not None:
        return []
    how = (f"only in the HTTP header {key.header}, which most SOAP services ignore"
           if key.header else "nowhere (idempotency.argument and idempotency.header unset)")
    return [f"the SOAP target {config.operation} gets no idempotency key in the message: the "
            f"envelope id goes {how}, so a redelivery after a lost answer can create a second "
            f"record. Set idempotency.argument if the operation has a request-id argument; "
            f"otherwise read before create, or look the subject up in the cross-references "
            f"and do not create it again (adapters/soap/README.md, 'Targets without an "
            f"idempotency key')"]


class SoapClientConfig(AdapterConfig):
    """How silobridge reaches a SOAP service: what a target and an enrich system share."""

    model_config = ConfigDict(extra="forbid")

    wsdl: str = Field(description="Local WSDL file (relative to the config file); never fetched.",
                      examples=["wsdl/demo-erp.wsdl"])
    service: str | None = Field(None, description="WSDL service name; default the only one.")
    port: str | None = Field(None, description="Port of the service; default its first SOAP port.")
    address: str | None = Field(
        None, description="Service URL overriding the WSDL's soap:address.",
        examples=["http://127.0.0.1:8090/soap"],
    )
    wsse: WsseCredentials | None = Field(None, description="WS-Security UsernameToken.")
    basic: BasicCredentials | None = Field(None, description="HTTP basic authentication.")
    tls: TargetTlsConfig | None = Field(
        None, description="Private CA and/or client certificate for an https:// address."
    )
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to connect.")
    timeout: float = Field(
        30.0, gt=0, description="Seconds to wait for the response; the whole answer must "
        "arrive within connect_timeout + timeout (a peer trickling bytes is cut off then).")
    max_workers: int = Field(8, ge=1, le=256, description="Concurrent calls (thread pool size).")


class SoapSystemConfig(SoapClientConfig):
    """A SOAP service whose operations enrich steps call (``call:``)."""

    STEP: ClassVar[str] = "call"

    type: Literal["soap"] = Field("soap", description="Selects this adapter.")
    max_response_bytes: int = Field(
        1_048_576, ge=1, le=64 * 1_048_576,
        description="Largest answer read; a larger one fails the step for good (unread).",
    )


class SoapTargetConfig(SoapClientConfig):
    """Call one operation of a SOAP service per delivery, through zeep."""

    type: Literal["soap"] = Field("soap", description="Selects this adapter.")
    operation: str = Field(description="Operation to call with the mapped payload as arguments.",
                           examples=["CreateSalesOrder"])
    idempotency: IdempotencyKey = Field(default_factory=IdempotencyKey,
                                        description="Where the envelope id is sent.")
