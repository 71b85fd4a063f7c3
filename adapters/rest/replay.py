"""Replay defence of a webhook endpoint: its delivery-id rule and what its signature covers.

A signature proves who sent the bytes it covers, nothing more. A replayed request (captured on
the way, or from a log) is stopped in one of two ways: a signed timestamp outside the window
(stale, 401), or within the window a delivery id seen before (duplicate, 200, not published).
The second only works when the id is signed too: if the dedupe key comes from a header the
signature does not cover, the replay gets through with a new id, or with none. ``replay_risks``
finds those endpoints so ``silobridge validate`` and the daemon at start can say so.
"""

from __future__ import annotations

from adapters._derive import ValueRule
from adapters.rest.inbound_config import (
    ApiKeyAuth,
    BasicAuth,
    GithubAuth,
    HmacAuth,
    HubspotAuth,
    RestEndpointConfig,
    ShopifyAuth,
    StandardWebhooksAuth,
    StripeAuth,
)
from adapters.rest.inbound_config import InboundAuth as Auth

__all__ = ["default_dedupe", "replay_risks"]

_DEFAULT_DEDUPE: dict[type, ValueRule] = {
    ShopifyAuth: ValueRule(header="X-Shopify-Webhook-Id"),
    GithubAuth: ValueRule(header="X-GitHub-Delivery"),
    StripeAuth: ValueRule(path="id"),
    HubspotAuth: ValueRule(path="eventId"),
    StandardWebhooksAuth: ValueRule(header="webhook-id"),
}


def default_dedupe(config: RestEndpointConfig) -> ValueRule | None:
    """The configured delivery-id rule; else the event id the endpoint derives (the id the
    integrator chose is the scope of a duplicate: HubSpot's bare ``eventId`` is unique per
    portal and app only, so deduping on it dropped another portal's event); else the sender's
    own delivery id (by auth scheme)."""
    if config.dedupe is not None:
        return config.dedupe
    if config.derive is not None and config.derive.id is not None:
        return config.derive.id
    if isinstance(config.auth, HmacAuth) and config.auth.id_header:
        return ValueRule(header=config.auth.id_header)
    return _DEFAULT_DEDUPE.get(type(config.auth))


def _signed_headers(auth: Auth) -> frozenset[str]:
    """Lowercase names of the headers whose values the signature covers."""
    if isinstance(auth, StandardWebhooksAuth):
        return frozenset({"webhook-id", "webhook-timestamp"})
    if isinstance(auth, HubspotAuth):
        return frozenset({"x-hubspot-request-timestamp"})
    if isinstance(auth, HmacAuth):
        used = [(auth.id_header, "{id}"), (auth.timestamp_header, "{timestamp}")]
        return frozenset(name.lower() for name, placeholder in used
                         if name and placeholder in auth.signed_payload)
    return frozenset()


def _signed_window(auth: Auth) -> int | None:
    """Seconds a captured request stays valid by its signed timestamp; None: no such bound."""
    if isinstance(auth, HmacAuth):
        signed = auth.timestamp_header is not None and "{timestamp}" in auth.signed_payload
        return auth.tolerance if signed else None
    if isinstance(auth, StripeAuth | StandardWebhooksAuth):
        return auth.tolerance
    return auth.max_age if isinstance(auth, HubspotAuth) else None


def _unsigned_source(rule: ValueRule, auth: Auth) -> str | None:
    """What the dedupe rule reads that the signature does not cover (None: all covered)."""
    if rule.header is not None and rule.header.lower() not in _signed_headers(auth):
        return f"header {rule.header}"
    if rule.cel is not None and "headers" in rule.cel:  # cannot tell which: assume unsigned
        return "request headers (its CEL expression reads 'headers')"
    return None  # body paths are signed; a constant is no id


def _fix(auth: Auth, source: str) -> str:
    if isinstance(auth, HmacAuth):
        name = source.removeprefix("header ")
        return (f"have the sender sign the id: auth.id_header: {name}, auth.timestamp_header "
                f"and auth.signed_payload: '{{id}}.{{timestamp}}.{{body}}' (or use the "
                f"standard_webhooks scheme)")
    return ("the sender does not sign it: dedupe on a body field that identifies the event "
            "(dedupe: {path: ...}), or use a scheme that signs the id (standard_webhooks)")


def replay_risks(config: RestEndpointConfig) -> list[str]:
    """Warnings for an endpoint whose signature leaves replays open; empty when it does not.

    Endpoints with an API key, basic auth or none are skipped: whoever holds a captured request
    holds the credential too and can forge any request, so replay is not the weaker point.
    """
    auth = config.auth
    if auth is None or isinstance(auth, ApiKeyAuth | BasicAuth):
        return []
    where = f"inbound endpoint {config.name!r}"
    seconds = _signed_window(auth)
    window = "at any later time" if seconds is None else f"within the {seconds}s window"
    risks = []
    if isinstance(auth, HmacAuth) and auth.timestamp_header and seconds is None:
        risks.append(f"{where}: timestamp_header {auth.timestamp_header} is checked but not "
                     f"signed, so a replay just sends a new time; add '{{timestamp}}' to "
                     f"auth.signed_payload")
    rule = default_dedupe(config)
    if rule is None:
        if seconds is None:
            risks.append(f"{where}: nothing stops a replay (no signed timestamp, no dedupe "
                         f"key): a captured request is accepted again {window}; sign an id and "
                         f"a timestamp with the body (auth.signed_payload: "
                         f"'{{id}}.{{timestamp}}.{{body}}') or dedupe on a signed body field")
        return risks
    source = _unsigned_source(rule, auth)
    if source is not None:
        risks.append(f"{where}: dedupes on {source}, which the {auth.scheme} signature does not "
                     f"cover: a captured request is accepted again {window} with a new or "
                     f"missing value there (replay risk); {_fix(auth, source)}")
    return risks
