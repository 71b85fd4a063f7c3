"""OpenID Connect sign-in against a real (minimal) provider on loopback: the whole code flow
with PKCE, then every way a callback or an ID token can be wrong, each refused with its reason
and without a session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.testclient import TestClient

from middleware.config.models import Config, ConsoleConfig, OidcConfig, StoreConfig
from middleware.console.api import Context, api_routes
from middleware.console.auth import SESSION_COOKIE, Authenticator
from middleware.console.handlers import HANDLERS
from middleware.console.livestate import LiveState
from middleware.console.oidc import FLOW_COOKIE, OidcClient
from middleware.console.store import ConsoleStore, open_console_store
from middleware.console.studio import Studio
from tests.unit.console.oidc_provider import (
    CLIENT_ID,
    CLIENT_SECRET,
    Provider,
    public_key_as_hmac_secret,
)

CALLBACK = "http://localhost/api/v1/oidc/callback"


@pytest.fixture
def provider() -> Iterator[Provider]:
    with Provider() as running:
        yield running


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConsoleStore]:
    opened = open_console_store(StoreConfig(kind="sqlite", path=str(tmp_path / "store.db")))
    yield opened
    opened.close()


def _console(provider: Provider, store: ConsoleStore, **oidc: Any) -> TestClient:
    settings = OidcConfig.model_validate({
        "issuer": provider.issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "redirect_url": CALLBACK, "label": "Test SSO",
        "roles": [{"value": "sales", "role": "viewer", "routes": ["crm-customer"]},
                  {"value": "ops", "role": "operator"}], **oidc})
    config = Config(console=ConsoleConfig(enabled=True, secure_cookies=False, oidc=settings))
    context = Context(config, store, Authenticator(store, config.console), LiveState(config),
                      False, Studio({}), OidcClient(settings))
    return TestClient(Starlette(routes=api_routes(context, HANDLERS)), base_url="http://localhost",
                      follow_redirects=False)


def _sign_in(client: TestClient) -> httpx.Response:
    """Start, let the provider sign the user in, come back: the callback's answer."""
    start = client.get("/api/v1/oidc/start")
    assert start.status_code == 303, start.text
    at_provider = httpx.get(start.headers["location"], follow_redirects=False)
    assert at_provider.status_code == 302, at_provider.text
    back = urlsplit(at_provider.headers["location"])
    return client.get(f"{back.path}?{back.query}")


def _refused(answer: httpx.Response, client: TestClient) -> str:
    """The reason a refused callback gives; and no session came of it."""
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location.startswith("/console/#/signin-error/"), location
    assert SESSION_COOKIE not in answer.cookies
    assert client.get("/api/v1/me").status_code == 401
    return unquote(location.rsplit("/", 1)[1])


def test_oidc_code_flow_with_pkce_signs_in_with_the_mapped_role(
        provider: Provider, store: ConsoleStore) -> None:
    with _console(provider, store) as client:
        assert client.get("/api/v1/login").json()["oidc"] == {
            "label": "Test SSO", "start": "/api/v1/oidc/start"}
        start = client.get("/api/v1/oidc/start")
        query = parse_qs(urlsplit(start.headers["location"]).query)
        assert query["code_challenge_method"] == ["S256"]
        assert query["redirect_uri"] == [CALLBACK] and query["client_id"] == [CLIENT_ID]
        assert query["scope"][0].split()[0] == "openid"
        assert len(query["state"][0]) >= 32 and len(query["nonce"][0]) >= 32
        assert "httponly" in start.headers["set-cookie"].lower()

        answer = _sign_in(client)
        assert answer.status_code == 303 and answer.headers["location"] == "/console/#/overview"
        assert SESSION_COOKIE in answer.cookies
        me = client.get("/api/v1/me").json()
        assert (me["name"], me["role"], me["routes"]) == ("oidc:ana", "operator", [])
        assert "dlq:replay" in me["permissions"] and me["csrf_token"]
        # the session is an ordinary one: a mutating call needs its CSRF token
        assert client.post("/api/v1/logout").status_code == 403
        assert client.post("/api/v1/logout",
                           headers={"X-CSRF-Token": me["csrf_token"]}).status_code == 200
    records = store.audit_records(10, 0, action="user.oidc")
    assert [(r.actor, r.target) for r in records] == [("oidc", "oidc:ana")]


def test_oidc_role_follows_the_provider_claim_and_is_limited_to_routes(
        provider: Provider, store: ConsoleStore) -> None:
    with _console(provider, store) as client:
        assert _sign_in(client).status_code == 303
        provider.user["groups"] = ["sales"]
        assert _sign_in(client).headers["location"] == "/console/#/overview"
        me = client.get("/api/v1/me").json()
        assert (me["role"], me["routes"]) == ("viewer", ["crm-customer"])
        assert client.get("/api/v1/routes/crm-order/dead-letters").status_code == 403
    changes = store.audit_records(10, 0, action="user.oidc")
    assert '"viewer"' in (changes[0].after or "") and '"operator"' in (changes[0].before or "")


def test_oidc_key_rotation_is_followed_once(provider: Provider, store: ConsoleStore) -> None:
    with _console(provider, store) as client:
        assert _sign_in(client).headers["location"] == "/console/#/overview"
        fetches = provider.jwks_fetches
        provider.rotate()
        assert _sign_in(client).headers["location"] == "/console/#/overview"
        assert provider.jwks_fetches == fetches + 1


FORGERIES: dict[str, tuple[dict[str, Any], str]] = {
    "expired": ({"exp": 1_700_000_000, "iat": 1_699_999_000}, "has expired"),
    "wrong audience": ({"aud": "another-client"}, "InvalidClaimError"),
    "several audiences without azp": ({"aud": [CLIENT_ID, "other"]}, "another client"),
    "wrong issuer": ({"iss": "https://evil.example"}, "InvalidClaimError"),
    "wrong nonce": ({"nonce": "replayed-nonce"}, "nonce does not match"),
    "no nonce": ({"nonce": None}, "nonce does not match"),
    "no exp": ({"exp": None}, "MissingClaimError"),
    "issued in the future": ({"iat": 4_000_000_000}, "future"),
}


@pytest.mark.parametrize("case", sorted(FORGERIES))
def test_oidc_refuses_an_id_token_with_bad_claims(
        case: str, provider: Provider, store: ConsoleStore) -> None:
    overrides, reason = FORGERIES[case]
    provider.overrides = overrides
    with _console(provider, store) as client:
        assert reason in _refused(_sign_in(client), client)
    assert store.user("oidc:ana") is None


@pytest.mark.parametrize("forgery", ["other key", "alg none", "hmac with the public key"])
def test_oidc_refuses_a_forged_signature(forgery: str, provider: Provider,
                                        store: ConsoleStore) -> None:
    if forgery == "other key":
        provider.sign_key = RSAKey.generate_key(2048)  # same kid, key not published
    elif forgery == "alg none":
        provider.algorithm = "none"
    else:
        provider.algorithm, provider.sign_key = "HS256", public_key_as_hmac_secret(provider)
    with _console(provider, store) as client:
        reason = _refused(_sign_in(client), client)
    assert "ID token is not valid" in reason or "not a signed JWT" in reason, reason


def test_oidc_refuses_a_callback_not_started_in_this_browser(
        provider: Provider, store: ConsoleStore) -> None:
    with _console(provider, store) as victim, _console(provider, store) as attacker:
        # login CSRF: the attacker's own code and state, delivered to the victim's browser
        start = attacker.get("/api/v1/oidc/start")
        back = urlsplit(httpx.get(start.headers["location"]).headers["location"])
        assert "not started in this browser" in _refused(
            victim.get(f"{back.path}?{back.query}"), victim)
        # the victim has a flow of its own: the attacker's state does not match it
        victim.get("/api/v1/oidc/start")
        assert "state differs" in _refused(victim.get(f"{back.path}?{back.query}"), victim)


def test_oidc_refuses_a_replayed_code_and_an_unmapped_user(
        provider: Provider, store: ConsoleStore) -> None:
    with _console(provider, store) as client:
        start = client.get("/api/v1/oidc/start")
        back = urlsplit(httpx.get(start.headers["location"]).headers["location"])
        callback = f"{back.path}?{back.query}"
        flow = client.cookies.get(FLOW_COOKIE)
        assert client.get(callback).headers["location"] == "/console/#/overview"
        client.cookies.clear()
        client.cookies.set(FLOW_COOKIE, flow or "")
        assert "refused the code" in _refused(client.get(callback), client)
        client.cookies.clear()

        provider.user["groups"] = ["marketing"]
        assert "none of your 'groups' values" in _refused(_sign_in(client), client)
        assert "did not sign you in: consent" in _refused(
            client.get("/api/v1/oidc/callback?error=access_denied&error_description=consent"),
            client)


def test_oidc_provider_away_and_not_configured_say_what_to_do(
        provider: Provider, store: ConsoleStore) -> None:
    with _console(provider, store, issuer="http://127.0.0.1:9/") as client:
        answer = client.get("/api/v1/oidc/start")
        assert "cannot be reached" in unquote(answer.headers["location"])
    config = Config()
    context = Context(config, store, Authenticator(store, config.console), LiveState(config),
                      False, Studio({}))
    with TestClient(Starlette(routes=api_routes(context, HANDLERS))) as plain:
        assert plain.get("/api/v1/login").json()["oidc"] is None
        assert plain.get("/api/v1/oidc/start").status_code == 404


def test_oidc_does_not_take_over_a_local_user(provider: Provider, store: ConsoleStore) -> None:
    store.add_user("oidc:ana", "argon2-hash-of-a-local-user", "admin")
    with _console(provider, store) as client:
        assert "a local user named" in _refused(_sign_in(client), client)


def test_oidc_hostile_callbacks_are_refused_with_a_reason(
        provider: Provider, store: ConsoleStore) -> None:
    with _console(provider, store) as client:
        for garbage in ("%%%", "e30=", "x" * 5000, "eyJzdGF0ZSI6IDF9"):
            client.cookies.set(FLOW_COOKIE, garbage)
            assert "not started in this browser" in _refused(
                client.get("/api/v1/oidc/callback?code=c&state=s"), client)
            client.cookies.clear()
        too_long = client.get("/api/v1/oidc/callback", params={"code": "c" * 3000})
        assert too_long.status_code == 400 and "longer than 2048" in too_long.json()["error"]
        # the provider's own text is shown as text by the page, and stays bounded here
        script = "<script>alert(1)</script>" * 20
        reason = _refused(client.get("/api/v1/oidc/callback",
                                     params={"error": "x", "error_description": script}), client)
        assert len(reason) < 300 and reason.startswith("the identity provider did not sign")
