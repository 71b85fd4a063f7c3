"""Generated ids (hypothesis) through a REST step's URL template: whatever the id, the request
either stays one path segment below the template's prefix, with the id decoded back exactly, or
is refused before it is sent as a permanent failure. Nothing is sent in either case here:
``prepare`` is the only place a value becomes a URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.rest.enrich import MAX_URL, RestSystem, RestSystemConfig
from middleware.config.enrich import EnrichStep
from middleware.envelope import Envelope
from middleware.errors import DeliveryError

BASE = "http://crm.example.com/api"
PREFIX = "/api/crm/v3/objects/contacts/"
SYSTEM = RestSystem(RestSystemConfig(base_url=BASE))  # never started: nothing is sent
CALL = SYSTEM.bind(EnrichStep.model_validate(
    {"system": "crm", "get": "/crm/v3/objects/contacts/{payload.id}?archived=false",
     "into": "contact"}), "routes.0.enrich.0")
ENVELOPE = Envelope.new(source="crm/fuzz", type="crm.contact.created", data={})
ids = st.one_of(st.text(max_size=300), st.just(""), st.integers(), st.floats(allow_nan=False),
                st.sampled_from(["..", ".", "../..", "%2e%2e", "a/../b", "?", "#", "\x00",
                                 "\u202e", "x" * (MAX_URL + 1)]))


@settings(max_examples=200, deadline=None, database=None)
@given(ids)
def test_enrich_rest_fuzzed_ids_stay_in_their_segment_or_are_refused(value: object) -> None:
    text = str(value)
    refusable = text in ("", ".", "..") or len(url_of(text)) > MAX_URL
    try:
        prepared = CALL.prepare(ENVELOPE, {"id": value})
    except DeliveryError as refused:
        assert refusable and refused.retryable is False, refused
        return
    assert not refusable
    url = urlsplit(prepared.request)
    assert (url.scheme, url.netloc, url.query) == ("http", "crm.example.com", "archived=false")
    assert url.path.startswith(PREFIX)
    segment = url.path[len(PREFIX):]
    assert "/" not in segment and "?" not in segment and "#" not in segment
    assert unquote(segment) == text
    assert segment not in (".", "..")
    assert prepared.key == prepared.request


def url_of(text: str) -> str:
    """The URL the template makes of ``text`` (to tell a too-long one apart)."""
    return f"{BASE}/crm/v3/objects/contacts/{quote(text, safe='')}?archived=false"


def test_enrich_rest_fuzz_setup_is_offline(tmp_path: Path) -> None:
    assert not SYSTEM.client._thread.is_alive()  # no loop, no connection was ever opened
