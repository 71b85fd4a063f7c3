"""What only the cycle collector would free: for tests that a failure leaves no cycle behind.

The daemon runs the collector rarely (``middleware.cli.run``), so garbage in reference cycles
lives long there and raises the process's memory high-water mark; these tests pause the
collector, let the collector keep what it finds (``DEBUG_SAVEALL``) and look at it.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collector_paused", "left_for_the_collector"]


@contextmanager
def collector_paused() -> Iterator[list[object]]:
    """The collector off; the yielded list receives what a collection finds unreachable."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def left_for_the_collector(garbage: list[object], *kinds: type) -> Counter[str]:
    """Collect now; how many objects of ``kinds`` only the collector could free, by type."""
    gc.collect()
    return Counter(type(thing).__name__ for thing in garbage if isinstance(thing, kinds))
