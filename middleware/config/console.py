"""The console's config section: the admin API and web console, OpenID Connect sign-in."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from middleware.config.strict import Strict as _Strict
from middleware.config.tls import ServerTlsConfig

__all__ = ["ConsoleConfig", "OidcConfig", "OidcRoleRule"]


class OidcRoleRule(_Strict):
    """One value of the identity provider's role claim and what it grants here."""

    value: str = Field(
        min_length=1, description="A value of the role claim (a group, an app role).",
        examples=["silobridge-operators"],
    )
    role: Literal["viewer", "operator", "integrator", "admin"] = Field(
        description="The console role a user with this claim value gets."
    )
    routes: list[str] = Field(
        default_factory=list,
        description="Routes that role is limited to; empty: every route.",
        examples=[["crm-customer", "crm-order"]],
    )


class OidcConfig(_Strict):
    """OpenID Connect sign-in to the console (authorization code flow with PKCE)."""

    issuer: str = Field(
        description="The provider's issuer URL, exactly as its ID tokens name it; "
        "'/.well-known/openid-configuration' is read from it. HTTPS (plain HTTP on loopback "
        "only).",
        examples=["https://sso.example.com/realms/acme"],
    )
    client_id: str = Field(min_length=1, description="This console's client id at the provider.")
    client_secret: str | None = Field(
        None, description="The client secret (confidential client), e.g. "
        "'${file:/run/secrets/oidc-secret}'; unset: a public client (PKCE only).",
    )
    redirect_url: str = Field(
        description="This console's callback as the browser reaches it; register it at the "
        "provider.", examples=["https://console.example.com/api/v1/oidc/callback"],
    )
    label: str = Field(
        "single sign-on", max_length=60,
        description="Button text on the sign-in page ('Sign in with ...').",
    )
    scopes: list[str] = Field(
        default_factory=lambda: ["openid", "profile", "email"],
        description="Scopes asked for; 'openid' is always sent.",
    )
    name_claim: str = Field(
        "preferred_username",
        description="ID token claim that names the user (falls back to 'sub'); users are "
        "called 'oidc:<value>' here so they never meet a local user.",
    )
    role_claim: str = Field(
        "groups", description="ID token claim holding the user's groups or roles; a dotted "
        "path reaches into objects (Keycloak: 'realm_access.roles', Entra ID: 'roles').",
    )
    roles: list[OidcRoleRule] = Field(
        default_factory=list,
        description="Claim values to roles, first match wins; a user matching none is "
        "refused.",
    )
    clock_skew: float = Field(
        60.0, ge=0, le=600, description="Seconds of clock difference tolerated on exp/iat."
    )
    timeout: float = Field(
        10.0, gt=0, description="Seconds to wait for the provider (discovery, token, keys)."
    )

    @field_validator("issuer", "redirect_url")
    @classmethod
    def _https(cls, value: str) -> str:
        url = urlsplit(value)
        loopback = url.hostname in ("127.0.0.1", "localhost", "::1")
        if url.scheme != "https" and not (url.scheme == "http" and loopback):
            raise ValueError("must be an https:// URL (plain http only on loopback)")
        return value


class ConsoleConfig(_Strict):
    """The admin API and web console (``docs/console.md``); off unless enabled."""

    enabled: bool = Field(
        False, description="Serve the admin API (/api/v1) and the web console (/console)."
    )
    port: int | None = Field(
        None, ge=0, le=65535,
        description="Own port for the console (0 picks a free one); unset: the ops server's port.",
    )
    host: str = Field(
        "127.0.0.1", description="Address of the console's own server (with 'port' only)."
    )
    tls: ServerTlsConfig | None = Field(
        None, description="Serve the console's own port over HTTPS (with 'port' only)."
    )
    session_ttl: float = Field(
        8 * 3600.0, gt=0, description="Seconds a login session lasts without renewal."
    )
    secure_cookies: bool = Field(
        True,
        description="Mark the session cookie Secure (sent over HTTPS only); turn off only for "
                    "plain-HTTP use on loopback.",
    )
    login_attempts: int = Field(
        5, ge=1, description="Failed logins allowed per user name and per client address "
                             "within 'login_window' before 429 (counted in the store: "
                             "replicas share the count)."
    )
    login_window: float = Field(
        300.0, gt=0, description="Seconds over which failed logins are counted."
    )
    audit_retention_days: float = Field(
        365.0, gt=0, description="Audit records older than this are deleted at start."
    )
    oidc: OidcConfig | None = Field(
        None, description="Sign in through an OpenID Connect provider (Keycloak, Entra ID, "
        "Okta) next to local users; see docs/console.md."
    )
