"""The pure parts of two-way sync: the store's compare-and-set decision and event keys."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from middleware.config.models import Config
from middleware.config.sync import SyncConfig
from middleware.envelope import Envelope
from middleware.errors import SyncKeyError
from middleware.stores.sync_rules import SubjectRow, Verdict, begin
from middleware.twoway.keys import fingerprint, subject_of, version_of

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_begin_is_stale_only_below_the_applied_version() -> None:
    row = SubjectRow(applied=10)
    assert begin(row, 9, "e", 0.0, 5, claim=False) == (Verdict.STALE, None)
    assert begin(row, 10, "e", 0.0, 5, claim=False) == (Verdict.GO, None)
    assert begin(row, 11, "e", 0.0, 5, claim=True)[0] is Verdict.GO


def test_begin_holds_while_another_event_claims_the_subject_until_the_claim_expires() -> None:
    claimed = SubjectRow(applied=1, holder="first", holder_version=2, held_until=100.0)
    assert begin(claimed, 3, "second", 99.0, 5, claim=True) == (Verdict.HELD, None)
    verdict, row = begin(claimed, 3, "second", 100.0, 5, claim=True)  # expired: a dead owner
    assert verdict is Verdict.GO and row is not None
    assert (row.holder, row.holder_version, row.held_until) == ("second", 3, 105.0)
    # the holder itself takes its claim again: a copy the broker redelivered (takeover) ...
    assert begin(claimed, 2, "first", 99.0, 5, claim=True, takeover=True)[0] is Verdict.GO
    # ... or one back from a retry tier (the claim is parked) ...
    parked = replace(claimed, parked=True)
    assert begin(parked, 2, "first", 99.0, 5, claim=True)[0] is Verdict.GO
    # ... but a copy sent next to the one being delivered waits for it
    assert begin(claimed, 2, "first", 99.0, 5, claim=True) == (Verdict.HELD, None)


def test_begin_without_ordering_never_holds() -> None:
    claimed = SubjectRow(holder="first", holder_version=2, held_until=100.0)
    assert begin(claimed, 3, "second", 0.0, 5, claim=False) == (Verdict.GO, None)


def _event(**data: object) -> Envelope:
    return Envelope.new(source="crm/t", type="crm.customer.updated", subject="C-1",
                        time=T0, data=data)


def test_version_is_the_envelope_time_in_microseconds_or_a_configured_field() -> None:
    assert version_of(_event(), SyncConfig(), "r") == int(T0.timestamp()) * 1_000_000
    later = (T0 + timedelta(microseconds=1)).isoformat()
    config = SyncConfig(version="meta.stamp")
    assert version_of(_event(meta={"stamp": later}), config, "r") == \
        int(T0.timestamp()) * 1_000_000 + 1
    assert version_of(_event(meta={"stamp": 42}), config, "r") == 42
    assert version_of(_event(meta={"stamp": "43"}), config, "r") == 43


@pytest.mark.parametrize(("data", "fragment"), [
    ({}, "is missing"),
    ({"meta": {"stamp": "yesterday"}}, "neither an integer nor an ISO 8601 time"),
    ({"meta": {"stamp": 1.5}}, "is a float"),
    ({"meta": {"stamp": True}}, "is missing"),
    ({"meta": {"stamp": 2**70}}, "64-bit"),
    ({"meta": {"stamp": "2026-01-01T00:00:00"}}, "without a time zone"),
])
def test_a_bad_version_is_a_precise_error_without_the_value(data: dict[str, object],
                                                           fragment: str) -> None:
    with pytest.raises(SyncKeyError) as caught:
        version_of(_event(**data), SyncConfig(version="meta.stamp"), "route-x")
    assert fragment in str(caught.value) and "yesterday" not in str(caught.value)
    assert caught.value.stage == "sync" and not caught.value.retryable


def test_subject_comes_from_the_envelope_or_a_data_path() -> None:
    assert subject_of(_event(), SyncConfig(), "r") == "C-1"
    assert subject_of(_event(no=7), SyncConfig(subject="no"), "r") == "7"
    with pytest.raises(SyncKeyError, match=r"sync\.subject .no. is missing"):
        subject_of(_event(), SyncConfig(subject="no"), "r")
    bare = Envelope.new(source="s", type="crm.customer.updated", data={})
    with pytest.raises(SyncKeyError, match="no 'subject' attribute"):
        subject_of(bare, SyncConfig(), "r")


def test_a_huge_subject_is_refused_as_permanent_not_sent_to_the_store() -> None:
    # a 1 MB key failed PostgreSQL's index row limit on every retry of the store call
    huge = Envelope.new(source="s", type="crm.customer.updated", subject="C" * 1_000_000,
                        data={"no": "N" * 201})
    with pytest.raises(SyncKeyError, match="1000000 characters long"):
        subject_of(huge, SyncConfig(), "r")
    with pytest.raises(SyncKeyError, match="201 characters long"):
        subject_of(huge, SyncConfig(subject="no"), "r")


def test_a_subject_with_a_nul_character_is_refused_as_permanent() -> None:
    # PostgreSQL text cannot hold NUL: the store call failed as a fault on every try, holding
    # a store thread for good; control characters a store can keep are keys like any other
    nul = Envelope.new(source="s", type="crm.customer.updated", subject="C\x00-1",
                       data={"no": "N\x00"})
    with pytest.raises(SyncKeyError, match="contains a NUL character"):
        subject_of(nul, SyncConfig(), "r")
    with pytest.raises(SyncKeyError, match="contains a NUL character"):
        subject_of(nul, SyncConfig(subject="no"), "r")
    assert subject_of(_event(no="\x1b[2J\x07"), SyncConfig(subject="no"), "r") == "\x1b[2J\x07"


@pytest.mark.parametrize(("value", "says"), [
    ("\u00b2", "neither an integer nor an ISO 8601 time"),  # str.isdigit() is True for it
    ("9" * 100_000, "out of the 64-bit range"),  # int() refuses more than 4,300 digits
    ("9" * 20, "out of the 64-bit range"),
])
def test_a_version_that_is_no_ascii_integer_is_refused_without_its_value(value: str,
                                                                         says: str) -> None:
    with pytest.raises(SyncKeyError, match=says) as caught:
        version_of(_event(v=value), SyncConfig(version="v"), "r")
    assert value[:5] not in str(caught.value)


def test_fingerprint_ignores_unlisted_fields_and_the_spelling_of_scalars() -> None:
    fields = ["name", "price"]
    assert fingerprint({"name": "A", "price": 10, "updated": 1}, fields) == \
        fingerprint({"name": "A", "price": "10", "updated": 2}, fields)
    assert fingerprint({"name": "A", "price": 10}, fields) != \
        fingerprint({"name": "A", "price": 11}, fields)


def _route(name: str, **sync: object) -> dict[str, object]:
    return {"name": name, "bind": ["crm.customer.*"], "target": {"type": "scripted"},
            "sync": sync}


def test_config_refuses_an_echo_pair_that_does_not_name_itself_back() -> None:
    with pytest.raises(ValueError, match=r"must be a route whose sync\.echo\.pair names .a."):
        Config.model_validate({"routes": [
            _route("a", echo={"pair": "b", "fields": ["name"]}),
            _route("b", echo={"pair": "c", "fields": ["name"]})]})
    with pytest.raises(ValueError, match="not a dotted field path"):
        SyncConfig.model_validate({"subject": "a..b"})


def test_config_takes_sync_and_enrich_steps_on_one_route() -> None:
    route = _route("a", ordering="subject") | {
        "enrich": [{"system": "crm", "get": "/c/{envelope.subject}", "into": "crm"}]}
    (parsed,) = Config.model_validate({"routes": [route]}).routes
    assert parsed.sync is not None and parsed.sync.ordering == "subject"
    assert [step.system for step in parsed.enrich] == ["crm"]
