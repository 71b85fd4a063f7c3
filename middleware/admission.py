"""Two-way admission of a synced route's messages: echo, conflict, stale, held or go.

The middle of ``middleware.pipeline.RouteWorker`` (its base class, above ``Settling``): after
the message is decoded and before it is mapped, a route with a ``sync`` section asks its
``SyncGate``. Every question needs the shared store, so it runs on the route's store threads.

Two ways there:

- **One message at a time** (``_admit``, from a store thread per message): copies that may
  take over their event's claim (redelivered, replayed, retry-tier), copies back from the hold
  queue (looked up first), messages whose mapping looks up cross-references, and every
  message of a route whose sync asks the store more than the claim (echo fingerprints or a
  conflict rule): their store round trips go in parallel on the route's store threads.
- **A batch per I/O tick** (``storecalls.Batches``, ``_admit_batch``) for every other message
  of a route whose sync needs only the claim (``SyncGate.batchable``: ``ordering``/``stale``
  alone).
  The consumer thread gathers them; one store thread takes what gathered, asks the store for
  all their claims in one round trip and maps and delivers the admitted ones itself. One
  message at a time, each took a hand-over to a store thread, a wait for its claim's batch
  and a wake-up; those thread switches, not the database, were most of an ordered route's
  cost (bench/ordering.py: 309 against 108 us of worker CPU per message).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import structlog

from middleware import headers
from middleware.broker.contract import Delivery
from middleware.broker.properties import with_headers
from middleware.broker.topology import hold_name
from middleware.envelope import Envelope
from middleware.errors import StoreUnavailable, SyncKeyError
from middleware.mapping import Mapping
from middleware.outcome import Outcome
from middleware.settling import Settling
from middleware.storecalls import Batches
from middleware.twoway import Admission, SyncGate
from middleware.twoway.gate import Ticket

__all__ = ["Admitting", "Pending"]

log = structlog.get_logger(__name__)

T = TypeVar("T")
Pending = tuple[Delivery, Envelope, "Mapping | None"]  # a message waiting for its admission


class Admitting(Settling):
    """Admission for ``RouteWorker``, which sets the attributes below in its ``__init__``."""

    _sync: SyncGate | None
    _filter: Callable[[Envelope], bool] | None
    _go: Callable[[Delivery, Envelope, Mapping | None, Ticket | None], None]
    _delivered_before: Callable[[Delivery, str], bool]

    def _batches(self) -> Batches[Pending] | None:
        """The batch admission of a route whose admission needs only the claim, else None."""
        if self._sync is None or not self._sync.batchable:
            return None
        return Batches(self._calls.submit, self._admit_batch, self._requeue)

    @staticmethod
    def batched(delivery: Delivery) -> bool:
        """Whether a message of a batchable route goes through the batch: not a copy that
        must be looked up first or may take over its event's claim (``_admit``)."""
        return not (delivery.redelivered or headers.REPLAYS in delivery.headers
                    or headers.HELD in delivery.headers or headers.ATTEMPTS in delivery.headers)

    def _requeue(self, pending: list[Pending]) -> None:
        for delivery, _envelope, _mapping in pending:
            self._finish(delivery, Outcome.REQUEUED)  # stopping: back to the queue

    def _admit_batch(self, pending: list[Pending]) -> None:
        """On a store thread: filter, one claim round trip for the batch, then map and deliver
        each admitted message (``_go``); every message is settled or started, whatever fails."""
        sync = self._sync
        assert sync is not None
        asking = [item for item in pending if self._each(item[0], item[1], self._passes, item)]
        try:
            answers = sync.admit_many([envelope for _delivery, envelope, _mapping in asking])
        except StoreUnavailable:  # stopping while the store failed
            self._requeue(asking)
            return
        except Exception as exc:  # a bug must cost these messages (to the DLQ), not the thread
            log.exception("unexpected error while admitting", route=self.route.name)
            for delivery, envelope, _mapping in asking:
                self._each(delivery, envelope, self._fail, delivery, envelope, exc)
            return
        for (delivery, envelope, mapping), answer in zip(asking, answers, strict=True):
            if isinstance(answer, SyncKeyError):
                self._each(delivery, envelope, self._fail, delivery, envelope, answer)
                continue
            admission, ticket = answer
            if admission is Admission.GO:
                self._each(delivery, envelope, self._go, delivery, envelope, mapping, ticket)
            else:
                self._each(delivery, envelope, self._not_admitted, delivery, envelope,
                           admission)

    def _passes(self, item: Pending) -> bool:
        delivery, envelope, _mapping = item
        if self._filter is not None and not self._filter(envelope):
            self._finish(delivery, Outcome.FILTERED)
            return False
        return True

    def _each(self, delivery: Delivery, envelope: Envelope, fn: Callable[..., T],
              *args: object) -> T | None:
        """``fn(*args)`` for one message of a batch, traced; a bug costs that message only."""
        try:
            return self._trace.run(delivery, fn, *args)
        except Exception as exc:
            log.exception("unexpected error while processing", route=self.route.name)
            if not delivery.settled:
                self._guarded(delivery, functools.partial(self._fail, delivery, envelope, exc))
            return None

    def _admit(self, sync: SyncGate, delivery: Delivery, envelope: Envelope,
               check_seen: bool) -> tuple[bool, Ticket | None]:
        """Two-way admission of one message; False when the message was settled here instead.

        A redelivered, retry-tier or replayed copy may take its event's own live claim (the
        delivery that took it has ended; a retry copy needs no ``park`` to have landed); any
        other copy waits for it. A copy looked up before (redelivered, replayed, back from the
        hold queue) is looked up again once it holds the claim: a claim is freed only after
        its delivery's idempotency record committed, so a copy whose event was delivered while
        it waited, by any replica, is caught however the two raced (fifty copies of one event:
        two writes without this).
        """
        takeover = (delivery.redelivered or headers.REPLAYS in delivery.headers
                    or headers.ATTEMPTS in delivery.headers)
        admission, ticket = sync.admit(envelope, takeover)
        if admission is not Admission.GO:
            self._not_admitted(delivery, envelope, admission)
            return False, None
        if (check_seen and ticket is not None and ticket.claimed
                and self._delivered_before(delivery, envelope.id)):
            sync.failed(envelope, ticket, None)  # frees the claim it just took
            self._finish(delivery, Outcome.DUPLICATE)
            return False, None
        return True, ticket

    def _not_admitted(self, delivery: Delivery, envelope: Envelope, admission: Admission
                      ) -> None:
        """Two-way sync said no: ack a stale event or an echo; park a held one in the hold
        queue (it comes back after ``sync.hold_delay`` and is asked about again)."""
        if admission is not Admission.HELD:
            outcome = Outcome(admission.value)  # stale, echo or conflict
            log.info(f"{outcome.value} event not delivered", route=self.route.name,
                     message_id=envelope.id, correlation_id=envelope.correlationid)
            self._finish(delivery, outcome)
            return
        # parked like a retry copy: a failed publish waits and tries again (a requeue here
        # looped hot while the publisher was away and spent the quorum delivery limit)
        held = with_headers(delivery.properties, {**delivery.headers, headers.HELD: "true"},
                            envelope.id)
        send = functools.partial(self._publisher.publish, "", hold_name(self.route.name),
                                 delivery.body, held, purpose="retry")
        self._park(delivery, send, Outcome.HELD, None, 0)
