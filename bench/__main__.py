"""Run every benchmark, or some, one after another: ``python -m bench [NAME ...] [--quick]``.

Each benchmark runs as its own subprocess (``python -m bench.<name>``), so one that fails or
leaves a broken state never hides the results of the others, and each cleans up after itself
(servers stopped, queues deleted). Its output is passed through as it comes; a summary of exit
codes and times closes the run. Exit code 1 when any benchmark failed or missed its check.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

BENCHMARKS = ("mapping_engine", "masking", "worker", "store", "ordering", "ingress", "sync_lag",
              "memory")

# Arguments of a full run, and of --quick (a smoke run of a few minutes in all).
FULL: dict[str, list[str]] = {
    "mapping_engine": ["--rounds", "9", "--number", "30000"],
    "masking": ["--max-kb", "1024", "--rounds", "3"],
    "worker": [],
    "store": ["--messages", "20000", "--rounds", "3"],
    "ordering": ["--subjects", "1000", "--updates", "5", "--rounds", "3"],
    "ingress": ["--duration", "20", "--rounds", "3"],
    "sync_lag": ["--rates", "200,1000,3000", "--duration", "30"],
    "memory": ["--warmup", "300", "--duration", "300", "--rate", "1000"],
}
QUICK: dict[str, list[str]] = {
    "mapping_engine": ["--rounds", "3", "--number", "5000"],
    "masking": ["--max-kb", "64", "--rounds", "1"],
    "worker": ["--messages", "5000", "--rounds", "1"],
    "store": ["--messages", "3000", "--rounds", "1"],
    "ordering": ["--subjects", "300", "--updates", "3", "--rounds", "1"],
    "ingress": ["--duration", "5", "--warmup", "1", "--rounds", "1"],
    "sync_lag": ["--rates", "200,1000,3000", "--duration", "5"],
    "memory": ["--warmup", "10", "--duration", "30", "--interval", "2", "--no-check"],
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
    results: list[tuple[str, int, float]] = []
    for name in chosen:
        extra = list((QUICK if args.quick else FULL)[name])
        if args.duration and name in ("ingress", "sync_lag"):
            extra += ["--duration", f"{args.duration:g}"]
        if args.memory_duration and name == "memory":
            extra += ["--duration", f"{args.memory_duration:g}"]
        command = [sys.executable, "-m", f"bench.{name}", *extra]
        print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
        started = time.monotonic()
        code = subprocess.run(command, check=False).returncode
        results.append((name, code, time.monotonic() - started))
    print("\n=== summary", flush=True)
    for name, code, seconds in results:
        verdict = "ok" if code == 0 else f"FAILED (exit code {code})"
        print(f"{name:15} {verdict:24} {seconds:7.0f}s", flush=True)
    return 0 if all(code == 0 for _, code, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
