"""CPU time of processes from /proc: what a benchmark's processes spent, not only how long.

On this 2-vCPU machine the consumer under test and RabbitMQ share the cores, so a rate alone
cannot say which of them was the limit; CPU seconds per message can.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["broker_pid", "cpu_seconds"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_pid() -> int | None:
    """The oldest running ``beam.smp`` (the machine's own RabbitMQ node, started before any
    node a test adds); None when there is none to read."""
    found: list[tuple[float, int]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "beam.smp":
                continue
            started = float((entry / "stat").read_text().rsplit(")", 1)[1].split()[19])
        except OSError:
            continue
        found.append((started, int(entry.name)))
    return min(found)[1] if found else None
