"""Dead letters for the admin API: summaries, bodies as a role may see them, edit-and-replay,
and the recent-errors feed.

Listing, replay and purge reuse ``middleware.broker.dlq`` (the CLI's code). Everything here
blocks on a broker connection of its own, so the API runs it on a worker thread. What leaves
this module for a role without body access is the failure summary only, with free text
(reasons, error messages) passed through the log masking, since a schema error can quote a
value from the payload.
"""

from __future__ import annotations

from typing import Any

import orjson

from middleware import headers as h
from middleware.broker.dlq import DeadLetter, browse
from middleware.broker.factory import blocking_channel, to_pika
from middleware.broker.properties import with_headers
from middleware.broker.topology import dlq_name, queue_name
from middleware.config.models import BrokerConfig
from middleware.console.rbac import BodyView
from middleware.log import mask_sensitive

__all__ = ["MASK", "NotFound", "edit_replay", "filtered", "find", "masked", "matching",
           "recent_errors", "summary", "view"]

MASK = "***"
BROWSE_LIMIT = 1000
"""Most dead letters one listing reads from a DLQ (each is read and put back)."""


class NotFound(Exception):
    pass


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return str(mask_sensitive(None, "", {"text": str(value)})["text"])


def summary(letter: DeadLetter, route: str) -> dict[str, Any]:
    """What any role may see of a dead letter: no body, masked free text."""
    age = letter.age_seconds()
    return {
        "id": letter.message_id, "route": route, "type": letter.type,
        "subject": letter.subject, "reason": _text(letter.reason),
        "stage": _text(letter.headers.get(h.STAGE)),
        "error": _text(letter.headers.get(h.ERROR)),
        "attempts": letter.attempts, "replays": int(letter.headers.get(h.REPLAYS, 0) or 0),
        "failed_at": letter.failed_at.isoformat() if letter.failed_at else None,
        "age_seconds": None if age is None else round(age, 3),
    }


def masked(value: Any) -> Any:
    """Every leaf value replaced, keys and structure kept."""
    if isinstance(value, dict):
        return {str(k): masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return None if value is None else MASK


def view(letter: DeadLetter, route: str, body: BodyView) -> dict[str, Any]:
    """One dead letter with its body as ``body`` allows: absent, masked data, or whole."""
    result = summary(letter, route)
    result["body_view"] = body.value
    if body is BodyView.NONE:
        return result
    try:
        event = orjson.loads(letter.body)
    except orjson.JSONDecodeError:
        event = None
    if body is BodyView.FULL:
        result["event"] = event
        if event is None:
            result["raw"] = letter.body.decode("utf-8", "replace")
        result["headers"] = {k: str(v) for k, v in letter.headers.items()}
    elif isinstance(event, dict):
        result["event"] = {**event, "data": masked(event.get("data"))}
    return result


def filtered(broker: BrokerConfig, route: str, *, type_: str | None, reason: str | None,
             subject: str | None) -> list[DeadLetter]:
    """A route's dead letters (up to ``BROWSE_LIMIT``) matching every filter given."""
    letters = browse(broker, dlq_name(route), BROWSE_LIMIT)
    return [letter for letter in letters
            if (type_ is None or letter.type == type_)
            and (reason is None or reason.lower() in letter.reason.lower())
            and (subject is None or letter.subject == subject)]


def find(broker: BrokerConfig, route: str, message_id: str) -> DeadLetter:
    for letter in browse(broker, dlq_name(route), BROWSE_LIMIT):
        if letter.message_id == message_id:
            return letter
    raise NotFound(message_id)


def edit_replay(broker: BrokerConfig, route: str, message_id: str, body: bytes) -> None:
    """Replace one dead letter's body and send it to the route queue (failure headers dropped,
    replay count incremented, as ``silobridge dlq replay`` does).

    The republish is confirmed before the old message is acked, so a failure in between leaves
    the dead letter where it was (at worst both exist; the envelope id dedupes at the target).
    """
    with blocking_channel(broker, "console") as channel:
        channel.confirm_delivery()
        for _ in range(BROWSE_LIMIT):
            method, props, _body = channel.basic_get(dlq_name(route), auto_ack=False)
            if method is None:
                break
            if props.message_id != message_id:
                continue
            old = dict(props.headers or {})
            new_headers = h.without_failure(old)
            new_headers[h.REPLAYS] = int(old.get(h.REPLAYS, 0) or 0) + 1
            channel.basic_publish("", queue_name(route), body,
                                  to_pika(with_headers(props, new_headers)), mandatory=True)
            channel.basic_ack(method.delivery_tag)
            return
    raise NotFound(message_id)


def recent_errors(broker: BrokerConfig, routes: list[str], limit: int | None
                  ) -> list[dict[str, Any]]:
    """The newest failures across ``routes``' DLQs, summaries only (all of them: None)."""
    found: list[dict[str, Any]] = []
    for route in routes:
        found.extend(summary(letter, route)
                     for letter in browse(broker, dlq_name(route), BROWSE_LIMIT))
    found.sort(key=lambda item: item["failed_at"] or "", reverse=True)
    return found if limit is None else found[:limit]


_SEARCHED = ("id", "type", "subject", "reason", "error", "stage", "route")


def matching(found: list[dict[str, Any]], text: str | None, stage: str | None,
             error: str | None) -> list[dict[str, Any]]:
    """Summaries containing ``text`` (any case) in a searched field, at a stage, of an error
    class. The search runs over the summaries as every role sees them (masked), so a search
    cannot reveal a masked value by whether it matches."""
    needle = text.casefold() if text else None
    return [item for item in found
            if (stage is None or item["stage"] == stage)
            and (error is None or item["error"] == error)
            and (needle is None or any(needle in str(item[key] or "").casefold()
                                       for key in _SEARCHED))]
