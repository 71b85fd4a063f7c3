"""How a route worker settles a message: ack after delivery, or retry tier, or DLQ.

The second half of ``middleware.pipeline.RouteWorker`` (its base class): the first half decides
what to do with a message; this one makes the outcome durable and settles the delivery. A
message is acked only after the target accepted it, or after its retry-tier or DLQ copy was
confirmed by the broker; when even that fails the message waits unacked and the copy is
published again (``middleware.copyretry``). Every done callback runs guarded, so a bug in one
still settles its delivery.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client import Counter, Histogram

from middleware import headers
from middleware.audit import OutcomeListener, OutcomeRecord
from middleware.broker.contract import Delivery, Publisher
from middleware.broker.properties import with_headers
from middleware.broker.topology import dlq_name, retry_name
from middleware.config.models import RetryPolicy, RouteConfig
from middleware.copyretry import CopyRetries
from middleware.envelope import Envelope
from middleware.outcome import Outcome
from middleware.recent import RecentIds
from middleware.retry import DeadLetter, Retry, decide
from middleware.storecalls import StoreCalls
from middleware.tracing.worker import NoTrace
from middleware.twoway import SyncGate
from middleware.twoway.gate import Ticket

__all__ = ["Settling"]

log = structlog.get_logger(__name__)


class Settling:
    """Settling for ``RouteWorker``, which sets every attribute below in its ``__init__``."""

    route: RouteConfig
    _policy: RetryPolicy
    _publisher: Publisher
    _target_name: str
    _copies: CopyRetries
    _calls: StoreCalls
    _sync: SyncGate | None
    _listener: OutcomeListener | None
    _recent: RecentIds
    _messages: dict[Outcome, Counter]
    _processing: Histogram
    _lag: Histogram
    _trace: NoTrace
    _in_flight: int
    _count_lock: threading.Lock

    def _accepted(self, delivery: Delivery, envelope: Envelope,
                  outcome: Outcome = Outcome.DELIVERED,
                  failure: dict[str, Any] | None = None) -> None:
        stamp = envelope.time
        if stamp is not None:
            if stamp.tzinfo is None:  # no offset: UTC, as adapters read such times (subtracting
                stamp = stamp.replace(tzinfo=UTC)  # it from an aware now raised: redelivered)
            self._lag.observe(max(0.0, time.time() - stamp.timestamp()))
        self._recent.add(envelope.id)
        self._finish(delivery, outcome, (self.route.name, envelope.id), failure=failure)

    def _park_capture(self, delivery: Delivery, envelope: Envelope, error: Exception) -> None:
        """The target accepted; storing what its answer links failed for good.

        Delivery and bookkeeping are separate outcomes: the message counts as delivered (its
        idempotency record is committed, so neither a redelivery nor a replay reaches the target
        again), and a copy marked as accepted goes to the DLQ, where the operator sees the
        reason, fixes the link (``silobridge xref``) and drops the letter; ``dlq replay``
        refuses it. Should even that copy fail to publish, the delivery still stands and the
        log keeps the reason.
        """
        failure = headers.failure_headers(
            dict(delivery.headers), error, attempts=0, route=self.route.name,
            target=self._target_name, now=datetime.now(UTC))
        failure[headers.STAGE] = "capture"
        failure[headers.ACCEPTED] = "true"
        failure[headers.REASON] = (f"target accepted; capture failed: {failure[headers.REASON]}"
                                   )[:1000]
        log.error("capture parked", route=self.route.name, message_id=envelope.id,
                  correlation_id=envelope.correlationid, reason=failure[headers.REASON])
        properties = with_headers(delivery.properties, failure, envelope.id)
        parked = self._publisher.publish("", dlq_name(self.route.name), delivery.body,
                                         properties, purpose="dlq")

        def settled(done: Future[None]) -> None:
            if done.exception() is not None:
                log.error("could not park the capture failure; the delivery stands",
                          route=self.route.name, message_id=envelope.id,
                          error=type(done.exception()).__name__)
            self._accepted(delivery, envelope, Outcome.CAPTURE_PARKED, failure)

        parked.add_done_callback(lambda done: self._guarded(delivery, lambda: settled(done)))

    def _fail(self, delivery: Delivery, envelope: Envelope | None, error: BaseException,
              ticket: Ticket | None = None) -> None:
        retryable = bool(getattr(error, "retryable", False))
        attempts_done = int(str(delivery.headers.get(headers.ATTEMPTS, 0) or 0))
        decision = decide(self._policy, attempts_done, retryable,
                          getattr(error, "retry_after", None))
        dead = isinstance(decision, DeadLetter)
        if ticket is not None and self._sync is not None and envelope is not None:
            # two-way sync hook: a retried event keeps its subject, a dead letter frees it
            sync, delay = self._sync, decision.delay if isinstance(decision, Retry) else None
            self._calls.submit(lambda: sync.failed(envelope, ticket, delay))
        if isinstance(decision, Retry):
            queue, attempts = retry_name(self.route.name, decision.tier), decision.tier
        else:
            queue, attempts = dlq_name(self.route.name), attempts_done
        new_headers = headers.failure_headers(
            dict(delivery.headers), error, attempts=attempts, route=self.route.name,
            target=self._target_name, now=datetime.now(UTC),
        )
        if isinstance(decision, DeadLetter):
            new_headers[headers.REASON] = f"{decision.reason}: {new_headers[headers.REASON]}"
        properties = with_headers(delivery.properties, new_headers,
                                  envelope.id if envelope else None)
        outcome = Outcome.DEAD_LETTERED if dead else Outcome.RETRIED
        self._trace.failing(delivery, envelope, error, new_headers[headers.STAGE], dead)
        log.warning(
            "dead-lettered" if dead else "retry scheduled", route=self.route.name,
            message_id=properties.message_id,
            correlation_id=envelope.correlationid if envelope else None,
            stage=new_headers[headers.STAGE], error=new_headers[headers.ERROR],
            reason=new_headers[headers.REASON], attempts=new_headers[headers.ATTEMPTS],
        )
        send = functools.partial(self._publisher.publish, "", queue, delivery.body, properties,
                                 purpose="dlq" if dead else "retry")
        self._park(delivery, send, outcome, new_headers, 0)

    def _park(self, delivery: Delivery, send: Callable[[], Future[None]], outcome: Outcome,
              failure: dict[str, Any] | None, tries: int) -> None:
        send().add_done_callback(lambda done: self._guarded(
            delivery, lambda: self._parked(delivery, done, outcome, failure, send, tries)))

    def _parked(self, delivery: Delivery, done: Future[None], outcome: Outcome,
                failure: dict[str, Any] | None, send: Callable[[], Future[None]],
                tries: int) -> None:
        """The copy's confirm: ack the message, or hold it and publish the copy again later
        (``middleware.copyretry``: a requeue here looped hot and spent the delivery limit)."""
        self._trace.parked(delivery, done.exception())
        if done.exception() is None:
            if tries:
                log.info("parked failed message after waiting", route=self.route.name,
                         tries=tries + 1)
            self._finish(delivery, outcome, failure=failure)
            return
        if tries % 30 == 0:  # at first, then about once a minute while it keeps failing
            log.error("could not park failed message; holding it and trying again",
                      route=self.route.name, error=str(done.exception()), tries=tries + 1)
        self._copies.later(
            tries + 1,
            lambda: self._guarded(delivery, lambda: self._park(
                delivery, send, outcome, failure, tries + 1)),
            lambda: self._finish(delivery, Outcome.REQUEUED))

    def _guarded(self, delivery: Delivery, callback: Callable[[], None]) -> None:
        """Run a Future's done callback so that a bug in it still settles the delivery.

        concurrent.futures logs and swallows what a done callback raises, so an exception
        there left the message unacked (held until the connection closed) and the in-flight
        count raised for good. Here it returns the message to its queue instead.
        """
        try:
            self._trace.run(delivery, callback)
        except Exception:
            log.exception("unexpected error in a delivery callback", route=self.route.name)
            if not delivery.settled:
                self._finish(delivery, Outcome.REQUEUED)

    def _begin(self) -> None:
        with self._count_lock:
            self._in_flight += 1

    def _finish(
        self, delivery: Delivery, outcome: Outcome, record: tuple[str, str] | None = None,
        failure: dict[str, Any] | None = None,
    ) -> None:
        """Settle; a delivered message's idempotency record is committed before its ack."""
        try:
            if outcome is Outcome.REQUEUED:
                delivery.nack()
            else:
                delivery.ack(record)
            self._trace.finished(delivery, outcome)  # after settling: never holds a message
            self._messages[outcome].inc()
            if self._listener is not None:
                self._listener(OutcomeRecord(self.route.name, outcome, delivery.body, failure))
            self._processing.observe(time.monotonic() - delivery.received)
        finally:  # counted down once, even when settling raised
            with self._count_lock:
                self._in_flight -= 1

