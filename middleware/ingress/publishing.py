"""The one way an inbound request's events reach the broker: once per delivery id, confirmed.

Senders resend: a provider whose answer got lost, Salesforce for 24 hours, an impatient client
fifty times at once. Checking the store, publishing, then recording lets every concurrent copy
pass the check before the first one records, and each publishes. So the ingress claims first:

    claim (insert-if-absent, atomic in the store) -> publish with confirms ->
    confirm (the key is done) | release (not published: the sender's retry must publish)

Only the copy that won a key publishes it. A copy that finds the key done is a duplicate; one
that finds it pending cannot know yet whether the owner will succeed, so it is refused as
retryable (503 / a Server fault, reason ``in_progress``) and nothing it carried is lost or acked.
A claim whose owner died between claim and confirm would block its key forever, so a pending
claim older than ``STALE_FACTOR`` times the publish timeout is taken over. What was confirmed
stays done even when a sibling failed, so the resend of a whole request publishes only what is
missing; events without a delivery id are simply published.

Threads: store calls block, so they run on a worker thread (one hop to claim, one to settle, none
at all for a request without delivery ids; a protocol that parses on a worker thread claims in
the same hop); publishing and the wait for the confirms happen on the event loop
(``LoopPublisher``), where a thread would only add GIL hand-offs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
import structlog

from middleware import metrics
from middleware.adapter import AdapterContext
from middleware.envelope import Envelope
from middleware.errors import FieldTooLong, Refused
from middleware.ingress.loop import LoopPublisher
from middleware.stores.base import Claim

__all__ = ["STALE_FACTOR", "Claimed", "IngressPublisher", "Keyed", "Published"]

log = structlog.get_logger(__name__)

STALE_FACTOR = 3.0
"""A pending claim older than this many publish timeouts lost its owner and is taken over."""

Keyed = tuple[str | None, Envelope]
"""An event with its delivery id (None: nothing to dedupe on)."""


@dataclass(frozen=True)
class Claimed:
    """The outcome of ``IngressPublisher.claim``: None when the request has no delivery ids."""

    claim: Claim | None


@dataclass(frozen=True)
class Published:
    ids: list[str]
    """Envelope ids published (and confirmed) by this request."""
    duplicates: int
    """Events whose delivery id was published before."""


class IngressPublisher:
    """Publishes the events of one endpoint's requests; call ``publish`` on the event loop."""

    def __init__(self, context: AdapterContext, endpoint: str, adapter: str,
                 retry_after: int) -> None:
        self._context = context
        self._endpoint = endpoint
        self._namespace = f"ingress:{endpoint}"
        self._retry_after = retry_after
        self._loop = LoopPublisher(context)
        self._received = metrics.RECEIVED.labels(endpoint, adapter)

    async def publish(self, keyed: Sequence[Keyed]) -> Published:
        """Publish the events whose delivery id this request claims (and those without one).

        Delivery ids must be unique within ``keyed``. Raises ``FieldTooLong`` before anything
        is claimed or published when an envelope cannot travel over AMQP, and ``Refused`` (503,
        Retry-After) when a copy holds a claim, the store fails or the broker does not confirm.
        """
        if all(key is None for key, _ in keyed):  # nothing to dedupe: no store, no thread
            return await self.publish_claimed(keyed, self.claim(keyed))
        return await self.publish_claimed(keyed, await anyio.to_thread.run_sync(self.claim,
                                                                                keyed))

    def claim(self, keyed: Sequence[Keyed]) -> Claimed:
        """Check every envelope and claim the delivery ids; blocks on the store when there are
        ids, so call it on a worker thread then (a protocol that parses on one claims there
        too, saving a hop). Hand the result to ``publish_claimed``."""
        for _, envelope in keyed:  # the whole request is refused before any of it is published
            envelope.check_amqp()
        keys = [key for key, _ in keyed if key is not None]
        if not keys:
            return Claimed(None)
        stale_after = STALE_FACTOR * self._context.broker.publish_timeout
        try:
            return Claimed(self._context.stores.idempotency.claim(self._namespace, keys,
                                                                  stale_after))
        except Exception as exc:  # sqlite3 / psycopg / translated errors: an outside system
            self._failed("claim", exc)
            raise self.unavailable("the dedupe store is unavailable; nothing was stored",
                                   "store_unavailable") from None

    async def publish_claimed(self, keyed: Sequence[Keyed], claimed: Claimed) -> Published:
        """``publish`` after ``claim``: publish what was won, then confirm or release."""
        claim = claimed.claim
        if claim is None:
            return Published(await self._publish(keyed, []), 0)
        if claim.pending:
            if claim.won:
                await self._settle([], claim.won, claim.owner)
            raise self.unavailable(f"{len(claim.pending)} delivery id(s) are being published "
                                   f"by another copy of this request right now; a retry learns "
                                   f"its outcome", "in_progress", "delivery in progress")
        won = set(claim.won)
        todo = [(key, envelope) for key, envelope in keyed if key is None or key in won]
        # Shielded: a request cancelled while it waits must still confirm or release its claims.
        ids = await asyncio.shield(self._publish_and_settle(todo, claim))
        return Published(ids, len(claim.done))

    def unavailable(self, why: str, reason: str = "broker_unavailable",
                    error: str = "temporarily unable to store events") -> Refused:
        """A retryable refusal: 503 with Retry-After (a Server fault for SOAP senders)."""
        seconds = self._retry_after
        return Refused(503, reason, error, f"{why}; send it again in {seconds}s",
                       headers={"Retry-After": str(seconds)})

    async def _publish_and_settle(self, todo: list[Keyed], claim: Claim) -> list[str]:
        confirmed: list[str | None] = []
        try:
            return await self._publish(todo, confirmed)
        finally:
            done = [key for key in confirmed if key is not None]
            lost = sorted(set(claim.won).difference(done))
            await self._settle(done, lost, claim.owner)

    async def _publish(self, keyed: Sequence[Keyed], confirmed: list[str | None]) -> list[str]:
        """Publish from the loop and await every confirm there; ``confirmed`` collects the
        delivery ids that made it, for the caller to settle even when this raises."""
        if not keyed:  # an empty batch stores nothing and is still accepted
            return []
        envelopes = [envelope for _, envelope in keyed]
        futures = [self._loop.publish(envelope) for envelope in envelopes]
        _done, not_done = await asyncio.wait(futures,
                                             timeout=self._context.broker.publish_timeout)
        ok = [(key, envelope) for (key, envelope), future in zip(keyed, futures, strict=True)
              if future.done() and future.exception() is None]
        confirmed.extend(key for key, _ in ok)
        self._received.inc(len(ok))
        if len(ok) == len(envelopes):
            return [envelope.id for envelope in envelopes]
        for future in not_done:  # their outcome no longer matters; do not log it as lost
            future.add_done_callback(_retrieve)
        errors = [future.exception() for future in futures if future.done()]
        failure = next((error for error in errors if error is not None), None)
        if isinstance(failure, FieldTooLong):  # a value pika refused: only the sender can fix
            raise failure
        why = (str(failure) if failure is not None
               else f"{len(not_done)} of {len(envelopes)} events not confirmed in time")
        # with delivery ids a resend publishes only the rest; without, all of it again
        kept = f"{len(ok)} of {len(envelopes)} events were stored" if ok else "nothing was stored"
        raise self.unavailable(f"{why}; {kept}")

    async def _settle(self, confirmed: list[str], lost: list[str], owner: str) -> None:
        """Confirm and release in one hop; a failure only delays a resend (the claim goes
        stale), so it is logged and counted but does not change the answer."""
        if confirmed or lost:
            await anyio.to_thread.run_sync(self._settle_now, confirmed, lost, owner)

    def _settle_now(self, confirmed: list[str], lost: list[str], owner: str) -> None:
        store = self._context.stores.idempotency
        if confirmed:  # published either way; a failed confirm leaves a claim that goes stale
            try:
                store.confirm(self._namespace, confirmed)
            except Exception as exc:
                self._failed("confirm", exc)
        if lost:
            try:
                store.release(self._namespace, lost, owner)
            except Exception as exc:
                self._failed("release", exc)

    def _failed(self, operation: str, exc: Exception) -> None:
        metrics.STORE_ERRORS.labels("idempotency", operation).inc()
        # the type only: driver messages can carry hosts, users or key values
        log.error("dedupe store call failed", endpoint=self._endpoint, operation=operation,
                  error=type(exc).__name__)


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
