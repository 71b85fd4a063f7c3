"""``python -m bench --quick`` (issue 18): a smoke test of every benchmark's harness.

No timing is asserted: a quick run on a shared CI machine measures nothing citable. What is
asserted is that each harness still works end to end: the run exits 0 (every benchmark's own
correctness checks held: every message arrived, every 202 was backed by a stored message, every
accepted webhook reached the target) and each benchmark printed the figures it exists for.

It needs what the benchmarks need: the local RabbitMQ with ``rabbitmqctl`` (the worker
benchmark's shovel baseline), PostgreSQL (the store and ordering benchmarks) and ``wrk`` (the
HTTP benchmarks; ``.ci/run`` installs it). Without one of them it skips locally and fails under
CI, where a skipped smoke test would prove nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench.__main__ import BENCHMARKS
from tests.integration.pg_helpers import ADMIN_DSN

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 900  # about 90 s on a quiet machine; several minutes on a loaded shared one


def _require(ok: bool, message: str) -> None:
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI is set: the bench smoke test must run)")
        pytest.skip(message)


def _postgres_reachable() -> bool:
    try:
        psycopg.connect(ADMIN_DSN, connect_timeout=3).close()
    except psycopg.OperationalError:
        return False
    return True


def sections(output: str) -> dict[str, str]:
    """The output of each benchmark, by name (``python -m bench`` heads each ``=== name:``)."""
    parts = re.split(r"^=== (\w+)(?::.*)?$", output, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def rows(section: str) -> list[dict[str, Any]]:
    """The JSON result lines of one benchmark's output."""
    return [json.loads(line) for line in section.splitlines() if line.startswith("{")]


def _worker(found: list[dict[str, Any]]) -> bool:
    """Every mode's rates, and the CPU the consumers and the broker spent per message (the
    figure that says which of them was the limit). The figures must be printed for every
    variant but may read 0: /proc counts in 10-ms ticks, and a fast machine moves the smoke
    run's 500 messages through raw pika in ~3 ms (seen: 154,437 messages/s, CPU 0 and 0) and
    through silobridge's consumer in ~1 tick (seen: 20 µs per message)."""
    measured = [r for r in found if all(r.get(k, 0) > 0 for k in
                                        ("raw pika", "shovel", "silobridge"))
                and all(isinstance(r.get("cpu_us", {}).get(k, {}).get(side), int)
                        for k in ("raw pika", "shovel", "silobridge")
                        for side in ("consumer", "broker"))]
    return {r["mode"] for r in measured} == {"backlog", "live"}


def _store(found: list[dict[str, Any]]) -> bool:
    variants = {(r["store"], r["processes"]) for r in found if r.get("rate", 0) > 0}
    summary = [r for r in found if r.get("postgres_over_sqlite") is not None]
    return variants == {("sqlite", 1), ("postgres", 1), ("postgres", 2)} and bool(summary)


def _ordering(found: list[dict[str, Any]]) -> bool:
    routes = {r["route"] for r in found if r.get("rate", 0) > 0}
    return routes == {"ordered", "unordered"} and any("ordered_over_unordered" in r
                                                      for r in found)


def _ingress(found: list[dict[str, Any]]) -> bool:
    servers = {r["server"] for r in found if r.get("accepted", 0) > 0}
    return servers == {"bare", "silobridge", "durable"} and any(
        r.get("every_202_stored") is True for r in found)


def _delivered(row: dict[str, Any]) -> bool:
    return row.get("accepted", 0) > 0 and row.get("delivered", 0) >= row["accepted"]


def _sync_lag(found: list[dict[str, Any]]) -> bool:
    delivered = {r["path"] for r in found if "path" in r and _delivered(r)}
    cpu = [r.get("cpu_us_per_event", {}) for r in found if r.get("path") == "silobridge"]
    return delivered == {"direct", "silobridge"} and all(
        c.get("silobridge", 0) > 0 and c.get("rabbitmq", 0) > 0 and c.get("target", 0) > 0
        for c in cpu) and bool(cpu)


def _memory(found: list[dict[str, Any]]) -> bool:
    return any("slope_mb_per_min" in r and _delivered(r) for r in found)


def _text(*patterns: str) -> Callable[[str], bool]:
    return lambda section: all(re.search(p, section, re.MULTILINE) for p in patterns)


def _json(check: Callable[[list[dict[str, Any]]], bool]) -> Callable[[str], bool]:
    return lambda section: check(rows(section))


FIGURES: dict[str, Callable[[str], bool]] = {
    "mapping_engine": _text(r"^compiled\s+[\d.]+ us/record",
                            r"^ratio compiled / hand-written speed: [\d.]+"),
    "masking": _text(r"^baseline(\s+\d+){2,}\s+[\d.]+$", r"^'\+1 '(\s+\d+){2,}\s+[\d.]+$"),
    "worker": _json(_worker),
    "store": _json(_store),
    "ordering": _json(_ordering),
    "ingress": _json(_ingress),
    "sync_lag": _json(_sync_lag),
    "memory": _json(_memory),
}
"""Per benchmark: did it print the figures it exists for (every variant measured)?"""


def missing_figures(output: str) -> list[str]:
    """The benchmarks whose figures are not in ``output`` (all of them: none left out)."""
    found = sections(output)
    return [name for name in BENCHMARKS if name not in found or not FIGURES[name](found[name])]


@pytest.mark.timeout(TIMEOUT + 60)
def test_bench_quick_runs_every_harness_and_prints_its_figures(amqp_url: str) -> None:
    # Given what the benchmarks need on this machine
    _require(shutil.which("wrk") is not None, "wrk is not installed (apt-get install wrk)")
    _require(shutil.which("rabbitmqctl") is not None, "rabbitmqctl is not on the PATH")
    _require(_postgres_reachable(), f"PostgreSQL not reachable at {ADMIN_DSN}")
    # When the quick run runs, as the README documents it
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "bench", "--quick"], cwd=ROOT,
                          env={**os.environ, "AMQP_URL": amqp_url, "STORE_PG_DSN": ADMIN_DSN},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=TIMEOUT, check=False)
    seconds = time.monotonic() - started
    tail = "\n".join(done.stdout.splitlines()[-60:])
    # Then it passed every benchmark's own checks
    assert done.returncode == 0, f"exit code {done.returncode} after {seconds:.0f} s:\n{tail}"
    summary = sections(done.stdout).get("summary", "")
    assert all(re.search(rf"^{name}\s+ok\s", summary, re.MULTILINE) for name in BENCHMARKS), \
        summary
    # And every benchmark printed its figures, every variant of them
    assert missing_figures(done.stdout) == [], tail
