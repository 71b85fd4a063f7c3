"""Two-way sync: per-subject ordering, stale updates and echo suppression (docs/two-way.md).

``keys`` is pure (subject, version, fingerprint of an event); ``gate`` asks the shared store,
on a route's store threads, what to do with each event of a synced route.
"""

from middleware.twoway.gate import Admission, SyncGate

__all__ = ["Admission", "SyncGate"]
