"""Every Prometheus metric silobridge exports, defined in one place.

Names are fixed and prefixed ``silobridge_``; labels are bounded (route, target, adapter,
endpoint, outcome, reason, queue kind, connection) and never carry ids or payload values.
The dashboard and alert rules in deploy/ query exactly these names.
"""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import Counter, Gauge, Histogram, Info

from middleware.histograms import BufferedHistogram

__all__ = [
    "AUDIT_ROWS",
    "BROKER_CALLBACK_ERRORS",
    "BROKER_CONNECTED",
    "BROKER_LOOP_SLOW_CALLBACKS",
    "BUILD_INFO",
    "CONFLICTS",
    "CONSUMERS",
    "DELIVERY_SECONDS",
    "DLQ_OLDEST_AGE",
    "ENRICH_CALLS",
    "ENRICH_SECONDS",
    "HELD_SUBJECTS",
    "IN_FLIGHT",
    "MAPPING_RELOADS",
    "MESSAGES",
    "PROCESSING_SECONDS",
    "PUBLISHED",
    "QUEUE_DEPTH",
    "RECEIVED",
    "RECONNECTS",
    "REJECTED",
    "STORE_ERRORS",
    "STORE_PRUNED",
    "SYNC_LAG",
    "XREF_MISSES",
]

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_LAG = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400)

AUDIT_ROWS = Counter(
    "silobridge_audit_rows",
    "Outcome records of the audit sink, by result: written, or dropped (queue full, or the "
    "audit table refused them).",
    ["result"],
)
RECEIVED = Counter(
    "silobridge_received",
    "Events accepted by an inbound endpoint and confirmed by the broker.",
    ["endpoint", "adapter"],
)
REJECTED = Counter(
    "silobridge_rejected",
    "Inbound requests refused (bad signature, too large, malformed, schema, broker down...).",
    ["endpoint", "adapter", "reason"],
)
PUBLISHED = Counter(
    "silobridge_published",
    "Messages confirmed by the broker, by purpose (ingress, deliver, retry, dlq, replay).",
    ["purpose"],
)
MESSAGES = Counter(
    "silobridge_messages",
    "Route messages by final outcome of one processing attempt (see middleware.outcome).",
    ["route", "target", "outcome"],
)
PROCESSING_SECONDS = BufferedHistogram(  # observed per message
    "silobridge_processing_seconds",
    "Time from taking a message off the route queue to acking it.",
    ["route"],
    buckets=_LATENCY,
)
DELIVERY_SECONDS = BufferedHistogram(  # observed per message
    "silobridge_delivery_seconds",
    "Time the target took to accept (or refuse) one delivery.",
    ["route", "target"],
    buckets=_LATENCY,
)
SYNC_LAG = BufferedHistogram(  # observed per message
    "silobridge_sync_lag_seconds",
    "Source change time (envelope time) to target acceptance: how far behind the target is.",
    ["route"],
    buckets=_LAG,
)
QUEUE_DEPTH = Gauge(
    "silobridge_queue_depth",
    "Messages ready in a route's queues, by kind (main, retry, dlq).",
    ["route", "kind"],
)
DLQ_OLDEST_AGE = Gauge(
    "silobridge_dlq_oldest_age_seconds",
    "Age of the oldest dead letter of a route (0 when the DLQ is empty).",
    ["route"],
)
CONFLICTS = Counter(
    "silobridge_conflicts",
    "Records changed in both systems within the conflict window, resolved by the route's "
    "rule (sync.conflict): a change dropped, or owned fields left out of a write.",
    ["route", "rule"],
)
HELD_SUBJECTS = Gauge(
    "silobridge_held_subjects",
    "Subjects of an ordered route whose latest event this process held back, because an "
    "earlier event of the subject is in flight or in a retry tier (sync.ordering: subject).",
    ["route"],
)
IN_FLIGHT = Gauge(
    "silobridge_in_flight",
    "Messages taken from a route queue and not yet acked.",
    ["route"],
)
CONSUMERS = Gauge(
    "silobridge_consumers",
    "Consumers this process runs on a route queue.",
    ["route"],
)
BROKER_CONNECTED = Gauge(
    "silobridge_broker_connected",
    "1 while the named broker connection is open and usable.",
    ["connection"],
)
BROKER_CALLBACK_ERRORS = Counter(
    "silobridge_broker_callback_errors",
    "Exceptions caught in a callback on the broker I/O loop, by kind of callback (publish, "
    "deliver, settle, confirm, return, channel, connection, scheduled); each cost at most "
    "one message, never the loop.",
    ["where"],
)
BROKER_LOOP_SLOW_CALLBACKS = Counter(
    "silobridge_broker_loop_slow_callbacks",
    "Callbacks on the broker I/O loop that ran longer than 50 ms, by kind of callback: each "
    "stalled every broker connection of the process meanwhile (a blocking call on the loop).",
    ["where"],
)
RECONNECTS = Counter(
    "silobridge_reconnects",
    "Broker connections re-established after a loss.",
    ["connection"],
)
MAPPING_RELOADS = Counter(
    "silobridge_mapping_reloads",
    "Mapping hot reloads by outcome (success, failure).",
    ["outcome"],
)
for _outcome in ("success", "failure"):  # known values start at 0, so rate() has a series
    MAPPING_RELOADS.labels(_outcome)
ENRICH_CALLS = Counter(
    "silobridge_enrich_calls",
    "Enrich step answers by route, system and result: fetched (the system was asked and "
    "answered), cached (a fresh answer was reused), failed (retried or dead-lettered).",
    ["route", "system", "result"],
)
ENRICH_SECONDS = Histogram(
    "silobridge_enrich_seconds",
    "Seconds an enrich step's request to its system took, answered or failed.",
    ["route", "system"],
    buckets=_LATENCY,
)
XREF_MISSES = Counter(
    "silobridge_xref_misses",
    "Cross-reference lookups that found nothing, by mapping.",
    ["mapping"],
)
STORE_ERRORS = Counter(
    "silobridge_store_errors",
    "Store calls that failed, by store (idempotency, state, xref; store for the readiness "
    "probe) and operation; a worker's failed call waits and is tried again.",
    ["store", "operation"],
)
STORE_PRUNED = Counter(
    "silobridge_store_pruned",
    "Store rows the hourly pruning deleted, by kind (idempotency records, two-way sync_echo "
    "fingerprints past their TTL, sync_subject rows past retention).",
    ["records"],
)
for _operation in ("claim", "confirm", "release"):  # the ingress's calls, from 0 for rate()
    STORE_ERRORS.labels("idempotency", _operation)
BUILD_INFO = Info("silobridge_build", "Version of silobridge and Python.")


def _version() -> str:
    try:
        return version("silobridge")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


BUILD_INFO.info({"version": _version(), "python": platform.python_version()})
