"""Store interfaces: idempotency records, cross-references, small persistent state, leases.

Embedded SQLite implements all three by default; PostgreSQL fills the same interfaces when several
replicas must share them. Stores are called from worker and adapter threads, so implementations
must be thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "Claim",
    "HeldSubject",
    "IdempotencyStore",
    "LeaseStore",
    "StateStore",
    "Stores",
    "SyncStore",
    "XrefImport",
    "XrefLink",
    "XrefStore",
]


@dataclass
class Claim:
    """The outcome of one ``claim`` call.

    ``won``: keys this caller now holds (new, or taken over from an owner that went silent
    longer than the stale bound); it must publish them, then ``confirm`` or ``release``.
    ``done``: keys published before (a duplicate). ``pending``: keys another caller holds right
    now; their outcome is not known yet, so they are neither new nor a duplicate.
    """

    owner: str
    won: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)


class IdempotencyStore(Protocol):
    """Which ids were delivered or published, so a redelivery or resend is not sent twice.

    Workers record delivered envelope ids per route after the fact (``record_many``). The
    ingress must decide *before* publishing, and concurrent copies of one request must not all
    publish, so it claims keys atomically (insert-if-absent): ``claim`` -> publish ->
    ``confirm`` (published) or ``release`` (not published: the sender's retry must publish).
    """

    def seen(self, route: str, message_id: str) -> bool:
        """Whether the id is recorded as done (a pending claim is not)."""

    def claim(self, namespace: str, keys: Sequence[str], stale_after: float) -> Claim:
        """Atomically take the keys nobody holds; a pending claim older than ``stale_after``
        seconds is taken over (its owner died before confirming or releasing)."""

    def confirm(self, namespace: str, keys: Sequence[str]) -> None:
        """Mark keys done: their publish was confirmed by the broker."""

    def release(self, namespace: str, keys: Sequence[str], owner: str) -> None:
        """Forget this owner's pending claims (the publish failed), so a resend publishes."""

    def record_many(self, records: list[tuple[str, str]]) -> None:
        """Remember (route, id) pairs in one transaction; durable when this returns."""

    def prune(self, before: float) -> int:
        """Forget records made before this Unix time; returns how many were deleted."""

    def close(self) -> None: ...


@dataclass(frozen=True, order=True)
class XrefLink:
    """One stored link, in canonical order (``ns_a <= ns_b``); the sort order of listings."""

    ns_a: str
    key_a: str
    ns_b: str
    key_b: str

    def __str__(self) -> str:
        return f"{self.ns_a}:{self.key_a} <-> {self.ns_b}:{self.key_b}"


@dataclass
class XrefImport:
    """What a bulk import did: links added, links already there, and the conflicts, each as
    (index in the input, what it contradicts and how to fix it)."""

    added: list[XrefLink] = field(default_factory=list)
    present: int = 0
    conflicts: list[tuple[int, str]] = field(default_factory=list)


class XrefStore(Protocol):
    """Cross-references between systems: ``crm.customer:C-1001 <-> erp.account:A-77``.

    A namespace is ``<system>.<entity>``; each (namespace, key) links to at most one key per
    other namespace, both ways, so lookups work in either direction. Listing, unlinking and
    importing serve the ``silobridge xref`` commands an operator fixes links with.
    """

    def lookup(self, from_ns: str, key: str, to_ns: str) -> str | None: ...

    def link(self, ns_a: str, key_a: str, ns_b: str, key_b: str) -> None:
        """Store a pair; re-linking the same pair is a no-op, a conflicting pair an error."""

    def links(self, namespace: str | None = None, key: str | None = None, *,
              after: XrefLink | None = None, limit: int = 100) -> list[XrefLink]:
        """Up to ``limit`` links in canonical order, after ``after`` (the last of the previous
        page); only those with ``namespace`` and/or ``key`` on either side when given."""

    def unlink(self, from_ns: str, key: str, to_ns: str) -> str | None:
        """Remove the link of ``from_ns:key`` to ``to_ns``; the key it pointed to, or None."""

    def import_links(self, links: Sequence[XrefLink], *, dry_run: bool = False) -> XrefImport:
        """Add many links in one transaction; conflicting ones are reported, not written.
        ``dry_run`` judges them the same way and writes nothing."""

    def close(self) -> None: ...


class StateStore(Protocol):
    """Small named values that must survive restarts, such as poller watermarks."""

    def get(self, name: str) -> str | None: ...

    def put(self, name: str, value: str) -> None: ...

    def probe(self) -> None:
        """A cheap call that raises while the store cannot serve (readiness's periodic check)."""

    def close(self) -> None: ...


class LeaseStore(Protocol):
    """Named leases, so that of several replicas exactly one does a job (runs a poller).

    A lease is a row with a holder and an expiry. The holder renews it well before it expires;
    when the holder dies the lease runs out and another replica takes it over. Work that must
    not be done twice commits its result through ``put_if_held``, which writes only while the
    writer still holds the lease, so a holder that lost it half-way cannot overwrite the newer
    holder's progress.
    """

    def acquire(self, name: str, holder: str, ttl: float) -> bool:
        """Take the lease (free or expired) or renew it (already ours) for ``ttl`` seconds;
        False when another holder has it."""

    def release(self, name: str, holder: str) -> None:
        """Give the lease up at once if this holder has it (an orderly stop)."""

    def holder(self, name: str) -> tuple[str, float] | None:
        """Who holds the lease and for how many more seconds; None when free or expired."""

    def put_if_held(self, name: str, holder: str, key: str, value: str) -> bool:
        """Set the named state ``key`` only while ``holder`` holds lease ``name``, atomically;
        False (nothing written) when it does not."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class HeldSubject:
    """A subject whose later events wait: the claim of the event being retried or delivered."""

    route: str
    subject: str
    holder: str
    seconds_left: float
    parked: bool
    """True while the holding event waits in a retry tier (not merely being delivered)."""


class SyncStore(Protocol):
    """Two-way sync state shared by replicas: per-subject sequence and fingerprints of writes.

    ``begin`` is the one compare-and-set every event of a synced route passes: stale when a
    newer version of its subject was applied, held while another event of the subject holds
    the claim (ordering), else go (and, with ``claim``, hold the subject until ``applied`` or
    ``release``). See ``sync_rules`` for the decision both backends share.
    """

    def begin(self, route: str, subject: str, version: int, holder: str, ttl: float,
              claim: bool, takeover: bool = False) -> str:
        """'go', 'stale' or 'held' (a ``sync_rules.Verdict`` value); ``takeover``: this copy
        may take its event's live claim (a redelivery or replay, see ``sync_rules.begin``)."""

    def park(self, route: str, subject: str, holder: str, ttl: float) -> None:
        """The holder waits in a retry tier: keep its claim for ``ttl`` more seconds."""

    def applied(self, route: str, subject: str, version: int, holder: str) -> None:
        """The target accepted ``version``: raise the applied version (never lower it) and
        free the holder's claim."""

    def begin_many(self, route: str, items: Sequence[tuple[str, int, str]], ttl: float,
                   claim: bool, takeover: bool = False) -> list[str]:
        """``begin`` for many (subject, version, holder), decided as if one after the other
        in this order; on PostgreSQL one round trip per batch of distinct subjects."""

    def applied_many(self, route: str, items: Sequence[tuple[str, int, str]],
                     records: Sequence[tuple[str, str]] = ()) -> None:
        """``applied`` for many (subject, version, holder) and, in the same transaction, the
        (route, message id) idempotency records of the delivered messages (as
        ``IdempotencyStore.record_many``): the route's group commit in one round trip."""

    def release(self, route: str, subject: str, holder: str) -> None:
        """Free the holder's claim without applying (its event was dead-lettered)."""

    def version(self, route: str, subject: str) -> int | None:
        """The version last applied for the subject, if any."""

    def held(self, route: str | None = None) -> list[HeldSubject]:
        """Subjects claimed right now (for ``silobridge status``)."""

    def remember(self, namespace: str, key: str, fingerprint: str, ttl: float) -> None:
        """A write into ``namespace:key`` with this fingerprint, kept for ``ttl`` seconds."""

    def take(self, namespace: str, key: str, fingerprint: str) -> bool:
        """Forget one unexpired matching write; True when there was one (an echo)."""

    def prune_echoes(self, chunk: int = 5000) -> int:
        """Delete expired write fingerprints, ``chunk`` per statement; how many went."""

    def prune_subjects(self, before: float, chunk: int = 5000) -> int:
        """Delete the rows of subjects last applied before ``before`` (epoch seconds) that no
        event claims now, ``chunk`` rows per statement; how many went."""

    def close(self) -> None: ...


@dataclass
class Stores:
    """The stores a daemon opened from its config, handed to the pipeline and adapters."""

    idempotency: IdempotencyStore
    xref: XrefStore
    state: StateStore
    lease: LeaseStore
    shared_close: Callable[[], None] | None = None
    """Closes what the three stores share (the PostgreSQL pool), after them."""
    sync: SyncStore | None = None
    """Two-way sync state; opened by ``open_stores`` (None in tests that build Stores)."""

    def probe(self) -> None:
        """Raises while the backend cannot serve; all three stores share it."""
        self.state.probe()

    def close(self) -> None:
        self.idempotency.close()
        self.xref.close()
        self.state.close()
        self.lease.close()
        if self.sync is not None:
            self.sync.close()
        if self.shared_close is not None:
            self.shared_close()
