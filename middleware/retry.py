"""Where a failed message goes next: a retry tier or the dead-letter queue. Pure.

Tiers are delay queues with a static TTL (one per attempt), so backoff costs no sleeping thread
and survives restarts. A target's Retry-After hint moves the message to the first tier whose
delay is at least that long, using up the attempts it skips.
"""

from __future__ import annotations

from dataclasses import dataclass

from middleware.config.models import RetryPolicy

__all__ = ["DeadLetter", "Decision", "Retry", "decide"]


@dataclass(frozen=True)
class Retry:
    tier: int  # 1-based; also the attempt number the message will carry
    delay: float


@dataclass(frozen=True)
class DeadLetter:
    reason: str  # "permanent" or "retries_exhausted"


Decision = Retry | DeadLetter


def decide(
    policy: RetryPolicy,
    attempts_done: int,
    retryable: bool,
    retry_after: float | None = None,
) -> Decision:
    """Decide for a message that has already been retried ``attempts_done`` times."""
    if not retryable:
        return DeadLetter("permanent")
    delays = policy.delays()
    if attempts_done >= len(delays):
        return DeadLetter("retries_exhausted")
    tier = attempts_done + 1
    if retry_after is not None:
        while tier < len(delays) and delays[tier - 1] < retry_after:
            tier += 1
    return Retry(tier, delays[tier - 1])
