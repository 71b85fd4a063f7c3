"""Publishing envelopes onto the events exchange, as every inbound adapter does.

An inbound adapter answers its sender with success only after ``publish_envelopes`` returned:
every envelope of the request was confirmed by the broker. Anything else raises a BrokerError,
which adapters turn into 503 (REST) or a Server fault (SOAP) so the sender retries; except
FieldTooLong (a value too long for AMQP), which no retry can fix: adapters answer 400 or a
Client fault, and ``publish_envelopes`` checks every envelope before it publishes any.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import wait as wait_all
from typing import Protocol

from middleware.broker.contract import Publisher
from middleware.broker.properties import Properties
from middleware.broker.topology import EVENTS_EXCHANGE
from middleware.envelope import Envelope
from middleware.errors import BrokerError, FieldTooLong, PublishTimeout
from middleware.tracing.w3c import outgoing

__all__ = ["check_confirms", "envelope_properties", "publish_envelope", "publish_envelopes"]


def envelope_properties(envelope: Envelope, type: str | None = None) -> Properties:
    """AMQP properties mirroring the envelope (``type`` overrides the event type); its trace
    context, when valid, also as ``traceparent`` / ``tracestate`` headers for other tools."""
    properties = Properties(**envelope.amqp_properties(type))
    if envelope.traceparent:
        properties.headers = outgoing(envelope.traceparent, envelope.tracestate)
    return properties


def publish_envelope(publisher: Publisher, envelope: Envelope) -> Future[None]:
    """Publish with the envelope type as routing key; the Future resolves on the confirm."""
    return publisher.publish(
        EVENTS_EXCHANGE, envelope.type, envelope.to_json(), envelope_properties(envelope),
        purpose="ingress",
    )


def publish_envelopes(
    publisher: Publisher, envelopes: Sequence[Envelope], timeout: float
) -> None:
    """Publish all (pipelined) and wait for every confirm; raise the first failure.

    A request is refused whole: an envelope too long for AMQP raises before any is published.
    """
    for envelope in envelopes:
        envelope.check_amqp()
    futures = [publish_envelope(publisher, envelope) for envelope in envelopes]
    _done, not_done = wait_all(futures, timeout=timeout)
    check_confirms(futures, len(not_done))


class _Settled(Protocol):
    def exception(self) -> BaseException | None: ...


def check_confirms(futures: Sequence[_Settled], unconfirmed: int) -> None:
    """Raise unless every publish was confirmed: a timeout, or the first failure as a
    BrokerError or FieldTooLong (concurrent and asyncio futures alike; the unconfirmed ones
    are not asked)."""
    if unconfirmed:
        raise PublishTimeout(f"{unconfirmed} of {len(futures)} envelopes not confirmed in time")
    for future in futures:
        error = future.exception()
        if isinstance(error, BrokerError | FieldTooLong):
            raise error
        if error is not None:
            raise BrokerError(str(error)) from error
