"""What the sync decisions need from an event, pure: its subject, version and fingerprints.

Errors name the route's option and the path, never a payload value (values may be personal).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from middleware.config.sync import OriginMarker, SyncConfig
from middleware.envelope import Envelope
from middleware.errors import SyncKeyError

__all__ = ["MAX_KEY", "at_path", "checked_key", "fingerprint", "is_marked", "subject_of",
           "usable_key", "version_of"]

_MISSING = object()
_MAX_VERSION = 2**63 - 1  # both stores keep versions as 64-bit integers
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INTEGER = re.compile(r"-?[0-9]+")
"""ASCII digits only: str.isdigit() let '²' through to int(), whose ValueError carried the
value into the log and the dead letter's reason."""
MAX_KEY = 200
"""Longest subject or record key, in characters. Keys are primary keys in the store: a huge one
failed PostgreSQL's index row limit on every try, which the store calls retry as a fault, so
one hostile event held a store thread for good. Refused here instead, as a permanent error."""


def at_path(data: Any, path: str) -> Any:
    """The value at a dotted path, or ``_MISSING`` (a sentinel callers compare against)."""
    node = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def subject_of(envelope: Envelope, config: SyncConfig, route: str) -> str:
    if config.subject is None:
        if not envelope.subject:
            raise SyncKeyError(f"route {route!r} syncs per subject, but the event has no "
                               f"'subject' attribute: have the source set it, or set "
                               f"sync.subject to the path of the key in the event's data")
        return checked_key(envelope.subject, route, "the event's 'subject'")
    value = at_path(envelope.data, config.subject)
    if value is _MISSING or value is None or isinstance(value, dict | list) or value == "":
        raise SyncKeyError(f"route {route!r}: sync.subject {config.subject!r} is missing, "
                           f"empty or not a scalar in the event's data")
    return checked_key(str(value), route, f"sync.subject {config.subject!r}")


def checked_key(key: str, route: str, what: str) -> str:
    if len(key) > MAX_KEY:
        raise SyncKeyError(f"route {route!r}: {what} is {len(key)} characters long; a record "
                           f"key may have at most {MAX_KEY}")
    if "\x00" in key:  # PostgreSQL text cannot hold it: the store call failed on every try
        raise SyncKeyError(f"route {route!r}: {what} contains a NUL character")
    return key


def usable_key(key: str) -> bool:
    """Can the store keep this record key (``checked_key`` without the error)?"""
    return len(key) <= MAX_KEY and "\x00" not in key


def version_of(envelope: Envelope, config: SyncConfig, route: str) -> int:
    """The event's version as an integer: microseconds for times, the number for integers."""
    if config.version is None:
        if envelope.time is None:
            raise SyncKeyError(f"route {route!r} compares versions by the event's 'time', but "
                               f"the event has none: have the source set it, or set "
                               f"sync.version to a version field of the data")
        return _micros(envelope.time)
    value = at_path(envelope.data, config.version)
    where = f"route {route!r}: sync.version {config.version!r}"
    if isinstance(value, bool) or value is _MISSING or value is None:
        raise SyncKeyError(f"{where} is missing in the event's data")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        if len(value.strip().lstrip("-")) > 19:  # int() of 100,000 digits raised ValueError
            raise SyncKeyError(f"{where} is out of the 64-bit range")
        number = int(value.strip())
    elif isinstance(value, str):
        try:
            number = _micros(datetime.fromisoformat(value.strip()))
        except ValueError:
            raise SyncKeyError(f"{where} is neither an integer nor an ISO 8601 time") from None
    else:
        raise SyncKeyError(f"{where} is a {type(value).__name__}; use an integer or an "
                           f"ISO 8601 time")
    if not -_MAX_VERSION <= number <= _MAX_VERSION:
        raise SyncKeyError(f"{where} is out of the 64-bit range")
    return number


def _micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise SyncKeyError("a version time without a time zone cannot be compared; send it "
                           "with an offset or 'Z'")
    return (moment - _EPOCH) // timedelta(microseconds=1)


def fingerprint(data: Any, fields: list[str]) -> str:
    """A digest of the listed fields' values; equal for equal values however a system spells
    scalars (``10`` and ``"10"``), since a system reports back what it stored, in its types."""
    picked = []
    for path in fields:
        value = at_path(data, path)
        picked.append(None if value is _MISSING else _plain(value))
    return hashlib.sha256(orjson.dumps(picked, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return None if value is None else str(value)


def is_marked(data: Any, marker: OriginMarker) -> bool:
    value = at_path(data, marker.field)
    return value is not _MISSING and value is not None and str(value) in marker.values
