"""What a dead letter looks like to each body view, without a broker."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from middleware import headers as h
from middleware.broker.dlq import DeadLetter
from middleware.console.deadletters import matching, summary, view
from middleware.console.rbac import BodyView

EVENT = {"specversion": "1.0", "id": "e-1", "source": "crm/x", "type": "crm.customer.updated",
         "subject": "C-1", "data": {"email": "ana@example.org", "lines": [{"qty": 2}]}}


def _letter() -> DeadLetter:
    headers = {h.REASON: "schema: 'ana@example.org' is not valid", h.STAGE: "validate"}
    return DeadLetter("e-1", "crm.customer.updated", "C-1", str(headers[h.REASON]), 3,
                      datetime.now(UTC), headers, orjson.dumps(EVENT))


def test_deadletter_view_none_has_no_body_and_masks_free_text() -> None:
    shown = view(_letter(), "r", BodyView.NONE)
    assert "event" not in shown and "headers" not in shown
    assert "ana@example.org" not in orjson.dumps(shown).decode()
    assert shown["attempts"] == 3 and shown["stage"] == "validate"


def test_deadletter_view_masked_keeps_keys_and_attributes() -> None:
    shown = view(_letter(), "r", BodyView.MASKED)
    assert shown["event"]["id"] == "e-1"
    assert shown["event"]["data"] == {"email": "***", "lines": [{"qty": "***"}]}
    assert "ana@example.org" not in orjson.dumps(shown).decode()


def test_deadletter_view_full_is_the_event() -> None:
    shown = view(_letter(), "r", BodyView.FULL)
    assert shown["event"] == EVENT


def test_deadletter_search_matches_masked_text_only_so_it_reveals_nothing() -> None:
    found = [summary(_letter(), "r")]
    assert matching(found, "ANA@example.org", None, None) == []  # masked: no oracle
    assert matching(found, "NOT VALID", None, None) == found  # any case, the reason
    assert matching(found, "c-1", "validate", None) == found  # subject, and the stage
    assert matching(found, None, "deliver", None) == []
    assert matching(found, None, None, "DeliveryError") == []
