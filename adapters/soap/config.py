"""Config of the SOAP adapters: the models are the reference (every field is described).

Inbound SOAP endpoint built from a WSDL (``inbound[*]``, ``type: soap``)::

    - type: soap
      name: erp-shipments
      path: /soap/shipments
      wsdl: wsdl/shipments.wsdl
      system: erp
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

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from adapters._derive import Derive
from middleware.adapter import AdapterConfig
from middleware.secrets import SecretFields

__all__ = [
    "BasicCredentials",
    "IdempotencyKey",
    "SalesforceConfig",
    "SoapEndpointConfig",
    "SoapOperationConfig",
    "SoapTargetConfig",
    "WsseCredentials",
]

_WORD = r"^[a-z0-9_-]+$"
_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_PATH = r"^/[A-Za-z0-9_./-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Endpoint(AdapterConfig):
    """What every SOAP endpoint on the ingress has."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        pattern=_NAME, description="Endpoint name; labels metrics and namespaces dedupe ids."
    )
    path: str = Field(pattern=_PATH, description="URL path on the ingress; ?wsdl serves the WSDL.",
                      examples=["/soap/salesforce/accounts"])
    max_body_bytes: int = Field(
        1_048_576, ge=1, le=64 * 1_048_576,
        description="Larger requests get a Client fault (HTTP 413) without being read.",
    )
    max_depth: int = Field(64, ge=4, le=256, description="Deepest element nesting accepted.")
    retry_after: int = Field(
        10, ge=1, description="Seconds in Retry-After of the Server fault when the broker is down."
    )


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


class SoapEndpointConfig(_Endpoint):
    """A SOAP endpoint generated from a local WSDL: document/literal, SOAP 1.1 and 1.2."""

    type: Literal["soap"] = Field("soap", description="Selects this adapter.")
    wsdl: str = Field(description="Local WSDL file (relative to the config file).",
                      examples=["wsdl/shipments.wsdl"])
    system: str = Field(
        pattern=_WORD, description="First word of the event type: 'erp' in erp.shipment.reported."
    )
    source: str | None = Field(
        None, description="Envelope source; default '<system>/<name>'.", examples=["erp/sap"]
    )
    operations: dict[str, SoapOperationConfig] = Field(
        min_length=1,
        description="WSDL operations accepted, by name; requests for others get a Client fault.",
    )

    @property
    def envelope_source(self) -> str:
        return self.source or f"{self.system}/{self.name}"


class SalesforceConfig(_Endpoint):
    """The receiving end of Salesforce Outbound Messaging (workflow / flow notifications)."""

    type: Literal["salesforce-om"] = Field("salesforce-om", description="Selects this adapter.")
    organization_id: str = Field(
        min_length=15, max_length=18,
        description="The org whose messages are accepted (15 or 18 characters); others get a "
        "Fault and nothing is stored.",
        examples=["${SF_ORG_ID}"],
    )
    wsdl: str | None = Field(
        None, description="The WSDL Salesforce generated for the outbound message, served at "
        "?wsdl (relative to the config file).",
    )
    system: str = Field("crm", pattern=_WORD, description="First word of the event type.")
    source: str = Field("crm/salesforce", description="Envelope source.")
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
        description="Larger requests get a Client fault (HTTP 413) without being read; "
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


class SoapTargetConfig(AdapterConfig):
    """Call one operation of a SOAP service per delivery, through zeep."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["soap"] = Field("soap", description="Selects this adapter.")
    wsdl: str = Field(description="Local WSDL file (relative to the config file); never fetched.",
                      examples=["wsdl/demo-erp.wsdl"])
    service: str | None = Field(None, description="WSDL service name; default the only one.")
    port: str | None = Field(None, description="Port of the service; default its first SOAP port.")
    operation: str = Field(description="Operation to call with the mapped payload as arguments.",
                           examples=["CreateSalesOrder"])
    address: str | None = Field(
        None, description="Service URL overriding the WSDL's soap:address.",
        examples=["http://127.0.0.1:8090/soap"],
    )
    idempotency: IdempotencyKey = Field(default_factory=IdempotencyKey,
                                        description="Where the envelope id is sent.")
    wsse: WsseCredentials | None = Field(None, description="WS-Security UsernameToken.")
    basic: BasicCredentials | None = Field(None, description="HTTP basic authentication.")
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to connect.")
    timeout: float = Field(30.0, gt=0, description="Seconds to wait for the response.")
    max_workers: int = Field(8, ge=1, le=256, description="Concurrent calls (thread pool size).")
