"""Run every benchmark, or some, one after another: ``python -m bench [NAME ...] [--quick]``.

Each benchmark runs as its own subprocess (``python -m bench.<name>``), so one that fails or
leaves a broken state never hides the results of the others, and each cleans up after itself
(servers stopped, queues deleted). Its output is passed through as it comes; a summary of exit
codes and times closes the run. Exit code 1 when any benchmark failed or missed its check.

``--quick`` is a smoke run of the harnesses (CI runs it: tests/e2e/test_bench_quick.py): tiny
sizes, every path of each harness once, and each benchmark's correctness checks (every message
arrived, every 202 backed by a stored message...) still enforced; its performance targets are
reported, not enforced (``--no-target``): too short a run on a shared machine cannot meet them.
The summary gives each benchmark's wall time and the CPU time of it and every process it started
(on a loaded machine the wall time says little; the CPU time is what a quiet one would take).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

BENCHMARKS = ("mapping_engine", "masking", "worker", "store", "ordering", "ingress", "sync_lag",
              "memory")

# Arguments of a full run, and of --quick (a smoke run: about 90 s in all on a quiet machine).
FULL: dict[str, list[str]] = {
    "mapping_engine": ["--rounds", "9", "--number", "30000"],
    "masking": ["--max-kb", "1024", "--rounds", "3"],
    "worker": [],
    "store": ["--messages", "20000", "--rounds", "3"],
    "ordering": ["--subjects", "1000", "--updates", "5", "--rounds", "3"],
    "ingress": ["--duration", "20", "--rounds", "3"],
    "sync_lag": ["--rates", "200,1000,3000", "--duration", "30"],
    "memory": ["--warmup", "300", "--duration", "1800", "--rate", "1000"],
}
QUICK: dict[str, list[str]] = {
    "mapping_engine": ["--rounds", "1", "--number", "2000", "--no-target"],
    "masking": ["--max-kb", "64", "--rounds", "1", "--no-target"],
    "worker": ["--messages", "500", "--rounds", "1"],
    "store": ["--messages", "500", "--rounds", "1", "--processes", "1,2", "--no-target"],
    "ordering": ["--subjects", "200", "--updates", "3", "--rounds", "1", "--no-target"],
    "ingress": ["--duration", "1", "--warmup", "1", "--rounds", "1"],
    "sync_lag": ["--rates", "500", "--duration", "1", "--warmup", "1"],
    "memory": ["--warmup", "1", "--duration", "2", "--interval", "1", "--rate", "200",
               "--no-target"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default all): {', '.join(BENCHMARKS)}")
    parser.add_argument("--skip", default="", help="comma-separated benchmarks to leave out")
    parser.add_argument("--quick", action="store_true",
                        help="short durations: checks the harnesses, figures are not citable")
    parser.add_argument("--duration", type=float,
                        help="seconds per measured run of ingress and sync_lag")
    parser.add_argument("--memory-duration", type=float,
                        help="seconds of the memory run's measured window")
    args = parser.parse_args(argv)
    unknown = [n for n in [*args.names, *filter(None, args.skip.split(","))]
               if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(BENCHMARKS)}")
    chosen = [n for n in BENCHMARKS
              if (not args.names or n in args.names) and n not in args.skip.split(",")]
    results: list[tuple[str, int, float, float]] = []
    for name in chosen:
        extra = list((QUICK if args.quick else FULL)[name])
        if args.duration and name in ("ingress", "sync_lag"):
            extra += ["--duration", f"{args.duration:g}"]
        if args.memory_duration and name == "memory":
            extra += ["--duration", f"{args.memory_duration:g}"]
        command = [sys.executable, "-m", f"bench.{name}", *extra]
        print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
        started, cpu = time.monotonic(), _children_cpu()
        code = subprocess.run(command, check=False).returncode
        results.append((name, code, time.monotonic() - started, _children_cpu() - cpu))
    print("\n=== summary", flush=True)
    for name, code, seconds, cpu in results:
        verdict = "ok" if code == 0 else f"FAILED (exit code {code})"
        print(f"{name:15} {verdict:24} {seconds:7.0f}s {cpu:7.0f}s CPU", flush=True)
    print(f"{'total':15} {'':24} {sum(r[2] for r in results):7.0f}s "
          f"{sum(r[3] for r in results):7.0f}s CPU", flush=True)
    return 0 if all(code == 0 for _, code, _, _ in results) else 1


def _children_cpu() -> float:
    """User + system CPU seconds of every finished process this one started, and theirs
    (the broker's and the database's work is not in it)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    sys.exit(main())
