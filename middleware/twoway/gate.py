"""The two-way sync decisions of one route, around the pipeline's delivery.

Every call here runs on the route's store threads (``StoreCalls``), never on the broker loop or
a target's event loop, and waits out store faults like every other store call of the pipeline.

- ``admit`` before mapping: an origin-marked or fingerprinted echo is dropped (``echo``); then
  one compare-and-set in the shared store says ``stale`` (a newer version was applied), ``held``
  (ordering: another event of the subject is in flight or in a retry tier) or ``go``; the
  events that arrive together ask it in one round trip (``middleware.twoway.claims``).
- ``writing`` just before the write: remember its fingerprint (the paired route's echo check).
- ``delivered`` after the target accepted, and ``commit`` (the group commit before the
  ack, with the idempotency records): raise the applied version, free the subject.
- ``failed``: the event goes to a retry tier (keep its claim for the retry delay, so later events
  of its subject wait for it) or to the DLQ (free the subject).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import structlog
from cachetools import TTLCache

from middleware import metrics
from middleware.config.models import RouteConfig, SyncConfig
from middleware.envelope import Envelope
from middleware.errors import StoreUnavailable, SyncKeyError
from middleware.stores.base import SyncStore
from middleware.twoway.claims import Claims
from middleware.twoway.conflict import Rules, reassert_namespace
from middleware.twoway.keys import (
    at_path,
    fingerprint,
    is_marked,
    subject_of,
    usable_key,
    version_of,
)

__all__ = ["Admission", "Echo", "SyncGate", "Ticket"]

log = structlog.get_logger(__name__)

T = TypeVar("T")
Call = Callable[[str, str, Callable[[], T]], T]
HELD_MEMORY = 10_000  # subjects this worker remembers as held, for the gauge
FILED_MEMORY = 100_000  # writes under way whose fingerprints a failure takes back


class Admission(StrEnum):
    GO = "go"
    STALE = "stale"
    HELD = "held"
    ECHO = "echo"
    CONFLICT = "conflict"


class Echo(StrEnum):
    NONE = "none"
    ECHO = "echo"
    """A write of the paired route, reported back: not a change."""
    REASSERT = "reassert"
    """A conflict winner's write reported back, to be written into the other system too."""


@dataclass(frozen=True)
class Ticket:
    """What ``admit`` learnt about an event that may go: its subject, version, claim."""

    subject: str
    version: int
    claimed: bool
    stale: bool = False
    """Older than the applied version, delivered anyway (``stale: deliver``)."""
    reassert: bool = False
    """A conflict winner written over a loser: its echo must flow back (see ``conflict``)."""


class SyncGate:
    """One route's sync state machine; thread-safe (the store decides every race)."""

    def __init__(self, route: RouteConfig, store: SyncStore, call: Call[Any],
                 paired: RouteConfig | None = None) -> None:
        assert route.sync is not None
        self._route = route.name
        self._config: SyncConfig = route.sync
        self._store = store
        self._call = call
        self._ordered = route.sync.ordering == "subject"
        self._claims = Claims(route.name, store, call, route.sync.claim_ttl, self._ordered)
        echo = route.sync.echo
        self._writes = echo  # fingerprints of this route's writes
        # the paired route's writes are what this route's source reports back
        self._echoes = (paired.sync.echo if echo is not None and paired is not None
                        and paired.sync is not None else None)
        self._rules = (Rules(route, store, call) if route.sync.conflict is not None
                       else None)
        self._pending: dict[str, tuple[str, int]] = {}  # delivered, applied at commit
        self._pending_lock = threading.Lock()
        # fingerprints filed for writes under way, by message id (``_unfile``); bounded: a
        # write that neither succeeded nor failed here (the process stopped) is forgotten
        self._filed: TTLCache[str, tuple[str, str, str]] = TTLCache(
            FILED_MEMORY, echo.ttl if echo is not None else 1)
        self._filed_lock = threading.Lock()
        self._held: dict[str, float] = {}
        self._held_lock = threading.Lock()
        metrics.HELD_SUBJECTS.labels(route.name).set_function(self._held_now)

    def admit(self, envelope: Envelope, takeover: bool = False
              ) -> tuple[Admission, Ticket | None]:
        """``takeover``: the copy may take its event's live claim (``sync_rules.begin``)."""
        subject = subject_of(envelope, self._config, self._route)
        echo = self._echo(envelope, subject)
        if echo is Echo.ECHO:
            return Admission.ECHO, None
        reassert = False
        if self._rules is not None and echo is Echo.NONE:  # a re-assertion passes the rule
            judgement = self._rules.judge(envelope, subject)
            if judgement.drop:
                return Admission.CONFLICT, None
            reassert = judgement.reassert
        version = version_of(envelope, self._config, self._route)
        verdict = self._claims.begin(subject, version, envelope.id, takeover)
        return self._admitted(subject, version, verdict, reassert)

    @property
    def batchable(self) -> bool:
        """Whether the route's sync needs the store for the claim alone (no echo fingerprint
        to check or file, no conflict rule): then the events of one I/O tick are admitted
        together (``admit_many``), and one thread maps and delivers them, which a store
        round trip per event would hold up."""
        return self._rules is None and self._writes is None

    def admit_many(self, envelopes: list[Envelope]
                   ) -> list[tuple[Admission, Ticket | None] | SyncKeyError]:
        """``admit`` for the new events (no takeover) of a ``batchable`` route, in one claim
        round trip; an event without a usable subject or version gets its error instead."""
        keys: list[tuple[str, int] | SyncKeyError] = []
        for envelope in envelopes:
            try:
                keys.append((subject_of(envelope, self._config, self._route),
                             version_of(envelope, self._config, self._route)))
            except SyncKeyError as exc:
                keys.append(exc)
        asked = [(key[0], key[1], envelope.id) for key, envelope in zip(keys, envelopes,
                                                                         strict=True)
                 if not isinstance(key, SyncKeyError)]
        verdicts = iter(self._claims.begin_all(asked))
        return [key if isinstance(key, SyncKeyError)
                else self._admitted(key[0], key[1], next(verdicts), False) for key in keys]

    def _admitted(self, subject: str, version: int, verdict: str, reassert: bool
                  ) -> tuple[Admission, Ticket | None]:
        if verdict == Admission.HELD:
            with self._held_lock:
                if len(self._held) >= HELD_MEMORY:
                    self._held.clear()
                self._held[subject] = time.monotonic() + self._config.claim_ttl
            return Admission.HELD, None
        self._forget_held(subject)
        if verdict == Admission.STALE:
            if self._config.stale == "drop":
                return Admission.STALE, None
            return Admission.GO, Ticket(subject, version, claimed=False, stale=True,
                                        reassert=reassert)
        return Admission.GO, Ticket(subject, version, claimed=self._ordered, reassert=reassert)

    def _echo(self, envelope: Envelope, subject: str) -> Echo:
        if self._writes is None or self._echoes is None:
            return Echo.NONE
        # the paired route filed what it wrote under its own name and the record's key there
        digest = fingerprint(envelope.data, self._echoes.fields)
        writer = self._writes.pair
        if self._writes.origin is not None and is_marked(envelope.data, self._writes.origin):
            # an echo by its marker: its fingerprint is used up too, or it would be left over
            # to swallow a later genuine edit with the same values in the fingerprinted fields
            self._call("sync", "take", lambda: self._store.take(writer, subject, digest))
            return Echo.ECHO
        if self._call("sync", "take", lambda: self._store.take(writer, subject, digest)):
            return Echo.ECHO
        again = reassert_namespace(writer)
        if self._call("sync", "take", lambda: self._store.take(again, subject, digest)):
            return Echo.REASSERT
        return Echo.NONE

    def shape(self, payload: Any) -> Any:
        """The payload to write: without the target's own fields under rule ``fields``."""
        return payload if self._rules is None else self._rules.strip(payload)

    def writing(self, envelope: Envelope, ticket: Ticket, payload: Any) -> None:
        """Just before the write: remember its fingerprint for the paired route.

        Before, not after: a system may report the write before its answer reaches us (a
        webhook is quicker than the HTTP response), and the paired route must already know it
        then. A write that then fails takes its fingerprint back (``failed``).
        """
        if self._writes is None:
            return
        key = ticket.subject if self._writes.key is None else at_path(payload, self._writes.key)
        if isinstance(key, str | int) and not isinstance(key, bool) and usable_key(str(key)):
            digest, ttl = fingerprint(payload, self._writes.fields), self._writes.ttl
            namespace = reassert_namespace(self._route) if ticket.reassert else self._route
            self._call("sync", "remember", lambda: self._store.remember(
                namespace, str(key), digest, ttl))
            with self._filed_lock:
                self._filed[envelope.id] = (namespace, str(key), digest)
        else:
            log.warning("no echo fingerprint: the echo key is missing in the payload, too long "
                        "or holds a NUL character",
                        route=self._route, message_id=envelope.id, key=self._writes.key)

    def delivered(self, envelope: Envelope, ticket: Ticket) -> None:
        """The target accepted: the applied version goes with the idempotency record of the
        message, in the route's group commit before the ack (``commit``), not one store
        round trip per message (bench/ordering.py)."""
        with self._pending_lock:
            self._pending[envelope.id] = (ticket.subject, ticket.version)
        with self._filed_lock:  # the write happened: its fingerprint waits for the echo
            self._filed.pop(envelope.id, None)

    def commit(self, records: list[tuple[str, str]]) -> None:
        """The route's group commit: the idempotency records of delivered messages and their
        applied versions (their subjects freed) in one transaction; on a store thread, inside
        the group commit's waiting and retrying. One round trip for both: a second one per
        batch, for the versions alone, held the acks of an ordered route back."""
        with self._pending_lock:
            items = [(*self._pending[ident], ident) for route, ident in records
                     if route == self._route and ident in self._pending]
        self._store.applied_many(self._route, items, records)
        with self._pending_lock:  # forgotten only once durable: a retried commit needs them
            for _subject, _version, ident in items:
                self._pending.pop(ident, None)

    def failed(self, envelope: Envelope, ticket: Ticket, retry_delay: float | None) -> None:
        """The event went to a retry tier (``retry_delay``) or the DLQ (None)."""
        try:
            self._unfile(envelope)
            if not ticket.claimed:
                return
            if retry_delay is None:
                self._call("sync", "release", lambda: self._store.release(
                    self._route, ticket.subject, envelope.id))
            else:
                ttl = retry_delay + self._config.claim_ttl
                self._call("sync", "park", lambda: self._store.park(
                    self._route, ticket.subject, envelope.id, ttl))
        except StoreUnavailable:  # stopping: the claim runs out by itself (claim_ttl)
            log.warning("subject claim left to expire", route=self._route,
                        message_id=envelope.id)

    def _unfile(self, envelope: Envelope) -> None:
        """Take back the fingerprint of a write that failed.

        Under rule ``fields`` a fingerprint covers only the fields this route owns, so the
        other system's genuine edit of its own fields carries the same fingerprinted values:
        a fingerprint left over by a failed write swallowed that edit as an echo (the demo
        showed it). A retry files it again just before its write. A write that timed out may
        have landed: its echo is then written back once, values unchanged, which is the
        cheaper mistake.
        """
        with self._filed_lock:
            filed = self._filed.pop(envelope.id, None)
        if filed is not None:
            namespace, key, digest = filed
            self._call("sync", "take", lambda: self._store.take(namespace, key, digest))

    def _forget_held(self, subject: str) -> None:
        if self._held:
            with self._held_lock:
                self._held.pop(subject, None)

    def _held_now(self) -> float:
        """Subjects whose last event this worker saw was held (and not long ago): a gauge read
        at scrape time; the store's view across replicas is ``silobridge status``."""
        now = time.monotonic()
        with self._held_lock:
            for subject in [s for s, until in self._held.items() if until <= now]:
                del self._held[subject]
            return float(len(self._held))
