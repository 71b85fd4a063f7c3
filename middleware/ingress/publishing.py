"""Publishing an inbound request's events once per delivery id, however many copies arrive.

Senders resend: a provider whose answer got lost, Salesforce for 24 hours, an impatient client
fifty times at once. Checking the store, publishing, then recording lets every concurrent copy
pass the check before the first one records, and each publishes. So the ingress claims first:

    claim (insert-if-absent, atomic in the store) -> publish with confirms ->
    confirm (the key is done) | release (not published: the sender's retry must publish)

Only the copy that won a key publishes it. A copy that finds the key done is a duplicate; one
that finds it pending cannot know yet whether the owner will succeed, so it answers "retry
later" (``InProgress``: 503 / a Server fault) and nothing it carried is lost or acked. A claim
whose owner died between claim and confirm would block its key forever, so a pending claim older
than ``STALE_FACTOR`` times the publish timeout is taken over. Store calls block: run this on a
worker thread, never on an event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import wait as wait_all
from dataclasses import dataclass

import structlog

from middleware import metrics
from middleware.adapter import AdapterContext
from middleware.broker.ingest import publish_envelope
from middleware.envelope import Envelope
from middleware.errors import BrokerError, PublishTimeout, SilobridgeError
from middleware.stores.base import Claim

__all__ = ["STALE_FACTOR", "InProgress", "Published", "StoreFailed", "publish_once"]

log = structlog.get_logger(__name__)

STALE_FACTOR = 3.0
"""A pending claim older than this many publish timeouts lost its owner and is taken over."""


class InProgress(SilobridgeError):
    """Another copy holds a claim on some delivery id; its outcome is not known yet."""


class StoreFailed(SilobridgeError):
    """The idempotency store could not answer; nothing was published."""


@dataclass(frozen=True)
class Published:
    ids: list[str]
    """Envelope ids published (and confirmed) by this call."""
    duplicates: int
    """Events whose delivery id was published before."""


def publish_once(
    context: AdapterContext, namespace: str, keyed: Sequence[tuple[str | None, Envelope]],
    endpoint: str,
) -> Published:
    """Publish the events whose delivery id this caller claims (and those without one).

    Delivery ids must be unique within ``keyed``. Raises ``InProgress`` (nothing published),
    ``StoreFailed`` (nothing published) or ``BrokerError`` (some publish failed: the confirmed
    ids are kept as done, the others released, so a resend publishes only what is missing).
    """
    store = context.stores.idempotency
    keys = [key for key, _ in keyed if key is not None]
    stale_after = STALE_FACTOR * context.broker.publish_timeout
    claim = _claim(endpoint, lambda: store.claim(namespace, keys, stale_after))
    if claim.pending:
        if claim.won:
            _settle("release", endpoint,
                    lambda: store.release(namespace, claim.won, claim.owner))
        raise InProgress(f"{len(claim.pending)} delivery id(s) are being published by another "
                         f"copy of this request right now")
    won = set(claim.won)
    todo = [(key, envelope) for key, envelope in keyed if key is None or key in won]
    futures: list[tuple[str | None, Envelope, Future[None]]] = []
    for key, envelope in todo:
        try:
            futures.append((key, envelope, publish_envelope(context.publisher, envelope)))
        except Exception as exc:  # a stopped publisher raises here: a failed publish
            failed: Future[None] = Future()
            failed.set_exception(BrokerError(str(exc)))
            futures.append((key, envelope, failed))
    wait_all([future for _, _, future in futures], timeout=context.broker.publish_timeout)
    ok = [(key, envelope) for key, envelope, future in futures
          if future.done() and future.exception() is None]
    confirmed = [key for key, _ in ok if key is not None]
    lost = sorted(won.difference(confirmed))
    if confirmed:  # published either way; a failed confirm leaves a claim that goes stale
        _settle("confirm", endpoint, lambda: store.confirm(namespace, confirmed))
    if lost:
        _settle("release", endpoint, lambda: store.release(namespace, lost, claim.owner))
    if len(ok) < len(futures):
        errors = [future.exception() for _, _, future in futures if future.done()]
        failure = next((e for e in errors if e is not None), None)
        if isinstance(failure, BrokerError):
            raise failure
        raise PublishTimeout(f"{len(futures) - len(ok)} of {len(futures)} envelopes not "
                             f"confirmed in time") from failure
    return Published([envelope.id for _, envelope in ok], len(claim.done))


def _claim(endpoint: str, call: Callable[[], Claim]) -> Claim:
    try:
        return call()
    except Exception as exc:  # sqlite3 / psycopg / translated errors: an outside system
        _failed("claim", endpoint, exc)
        raise StoreFailed("the dedupe store is unavailable") from exc


def _settle(operation: str, endpoint: str, call: Callable[[], None]) -> None:
    """Confirm or release; a failure only delays a resend (the claim goes stale), so it is
    logged and counted but does not change the answer."""
    try:
        call()
    except Exception as exc:
        _failed(operation, endpoint, exc)


def _failed(operation: str, endpoint: str, exc: Exception) -> None:
    metrics.STORE_ERRORS.labels("idempotency", operation).inc()
    # the type only: driver messages can carry hosts, users or key values
    log.error("dedupe store call failed", endpoint=endpoint, operation=operation,
              error=type(exc).__name__)
