"""Config of the REST target (``routes[*].target`` with ``type: rest``) and of client auth.

    target:
      type: rest
      method: PUT
      url: https://erp.example.com/api/accounts/{payload.account_no}
      headers: {X-Source: silobridge}
      auth: {type: oauth2, token_url: https://erp.example.com/oauth/token,
             client_id: silobridge, client_secret_env: ERP_CLIENT_SECRET}
      timeout: 10
      concurrency: 8

Each secret is named by an environment variable (``*_env``) or a file (``*_file``), one of them.
URL and header values are templates: ``{envelope.<attr>}`` and ``{payload.<path>}`` are replaced
(URL-encoded in the URL). The client auth models are shared with the poller.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from middleware.adapter import AdapterConfig
from middleware.config.models import TargetTlsConfig
from middleware.secrets import SecretFields

__all__ = ["BasicClientAuth", "BearerAuth", "ClientAuth", "OAuth2Auth", "RestTargetConfig"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BasicClientAuth(_Strict, SecretFields):
    type: Literal["basic"] = Field(description="HTTP basic auth.")
    username: str = Field(description="User name.")
    password_env: str | None = Field(
        None, description="Environment variable holding the password; or use password_file.")
    password_file: str | None = Field(
        None, description="File holding the password (relative to the config file); instead "
        "of password_env.", examples=["/run/secrets/silobridge/erp-password"])


class BearerAuth(_Strict, SecretFields):
    type: Literal["bearer"] = Field(description="A static bearer token.")
    token_env: str | None = Field(
        None, description="Environment variable holding the token; or use token_file.")
    token_file: str | None = Field(
        None, description="File holding the token (relative to the config file); instead of "
        "token_env.", examples=["/run/secrets/silobridge/erp-token"])


class OAuth2Auth(_Strict, SecretFields):
    type: Literal["oauth2"] = Field(description="OAuth2 client-credentials grant.")
    token_url: str = Field(description="Token endpoint.", examples=["https://idp/oauth/token"])
    client_id: str = Field(description="Client id.")
    client_secret_env: str | None = Field(
        None, description="Environment variable holding the client secret; or use "
        "client_secret_file.")
    client_secret_file: str | None = Field(
        None, description="File holding the client secret (relative to the config file); "
        "instead of client_secret_env.", examples=["/run/secrets/silobridge/erp-client-secret"])
    scope: str | None = Field(None, description="Space-separated scopes to request.")
    audience: str | None = Field(None, description="Audience parameter (Auth0, some IdPs).")
    client_auth: Literal["basic", "post"] = Field(
        "basic", description="Send the client credentials as HTTP basic (RFC 6749 default) or "
        "in the form body (client_secret_post), as the token endpoint wants."
    )
    refresh_margin: float = Field(
        30.0, ge=0, description="Seconds before expiry at which the token is renewed."
    )


ClientAuth = Annotated[BasicClientAuth | BearerAuth | OAuth2Auth, Field(discriminator="type")]


class RestTargetConfig(AdapterConfig):
    """Where and how mapped payloads are sent over HTTP."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["rest"] = Field("rest", description="Selects this adapter.")
    method: Literal["POST", "PUT", "PATCH", "DELETE"] = Field(
        "POST", description="HTTP method."
    )
    url: str = Field(
        pattern=r"^https?://",
        description="URL template: {envelope.subject}, {payload.a.b} are filled in.",
        examples=["https://erp.example.com/api/accounts/{envelope.subject}"],
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra headers (templates allowed)."
    )
    auth: ClientAuth | None = Field(None, description="How to authenticate to the target.")
    timeout: float = Field(
        10.0, gt=0, le=120,
        description="Seconds per request; keep it far below RabbitMQ's consumer timeout.",
    )
    concurrency: int = Field(
        8, ge=1, le=128,
        description="Requests in flight to this target at most (a slow target blocks nothing "
        "else).",
    )
    idempotency_header: str | None = Field(
        "Idempotency-Key", description="Header carrying the envelope id; null to leave it out."
    )
    send_body: bool = Field(
        True, description="Send the mapped payload as the JSON body (false for DELETE)."
    )
    cloudevents: Literal["off", "binary", "structured"] = Field(
        "off", description="Send the mapped payload as a CloudEvent (HTTP binding): 'binary' "
        "puts the attributes in ce-* headers and the payload in the body, 'structured' sends "
        "the whole event as application/cloudevents+json. The event keeps the source event's "
        "id, type, subject and time, and names it as its causationid.")
    max_response_bytes: int = Field(
        1_048_576, ge=1, le=64 * 1_048_576,
        description="Largest answer read (for captures); a larger one is not read, the delivery "
        "counts all the same and nothing is captured from it (logged).",
    )
    verify_tls: bool = Field(True, description="Verify the target's TLS certificate.")
    tls: TargetTlsConfig | None = Field(
        None, description="Private CA and/or client certificate for an https:// target (the "
        "OAuth2 token endpoint keeps the system CAs).",
    )

    @model_validator(mode="after")
    def _events_have_bodies(self) -> RestTargetConfig:
        if self.cloudevents != "off" and not self.send_body:
            raise ValueError(f"cloudevents: {self.cloudevents} sends the payload; it needs "
                             f"send_body: true")
        return self

    @model_validator(mode="after")
    def _verify_with_ca(self) -> RestTargetConfig:
        if not self.verify_tls and self.tls is not None and self.tls.ca_file:
            raise ValueError("verify_tls is false, so tls.ca_file would be ignored; remove one")
        return self
