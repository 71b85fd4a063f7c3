"""Log masking on hostile text from 1 kB to 1 MB: the time per byte must stay flat.

Every log value that is not an id goes through ``middleware.log``'s pattern masking, and much of
it is sender-controlled (a Content-Type header, a SOAP fault string). Each input below defeated
one of the earlier patterns: a pattern retried at every start position whose failed attempt
scans to the end of the text costs O(n^2) (a 20 kB ``a-a-a-...`` took 17 s). The baseline is
ordinary log text (a rejected-webhook line with a URL, an e-mail and numbers) of the same
size: the cost every log line pays anyway.

For each input and size the best of ``--rounds`` timings is kept, as ns per byte. Linear masking
shows the same ns/byte at 1 kB and at 1 MB; quadratic masking multiplies it by the size ratio.

Run:  .venv/bin/python -m bench.masking [--max-kb 1024] [--rounds 3]
Exit code 1 when any input's ns/byte at the largest size is more than 4x its ns/byte at 16 kB
(reported only with ``--no-target``).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

from middleware.log import mask_sensitive

__all__ = ["BASELINE", "HOSTILE", "main", "seconds"]

HOSTILE = (
    "a-",  # word boundaries everywhere: secret-assignment prefix, URL scheme
    "a.",  # URL scheme and e-mail local part runs
    "a",  # one long e-mail local part without "@"
    "eyJ-",  # JWT starts at every boundary of one [\w-] run
    "password-",  # secret keyword without a value, many times
    "<password>",  # secret XML elements never closed
    "<password ",  # open tags never finished
    "://a:",  # URL userinfo without "@"
    "x@a.",  # e-mail domains without a top-level domain
    "AB12 ",  # IBAN starts
    "2 ",  # card-number starts
    "+1 ",  # phone-number starts
)
"""Repeated to the measured size; each one made at least one earlier pattern quadratic."""

BASELINE = (
    "webhook rejected endpoint=shopify-orders status=415 reason=media_type "
    "detail='expected application/json' from https://shop.example.com/hooks by ops@erp.example "
    "order SO-10023 amount 1234.56 CNY at 2026-11-26T11:31:51Z\n"
)
SIZES_KB = (1, 4, 16, 64, 256, 1024)
CHECK_FROM_KB = 16  # below this, fixed costs per call still show in ns/byte
MAX_GROWTH = 4.0  # noise on a shared machine reached 2.4; quadratic masking gives 64 at 1 MB


def seconds(unit: str, size: int) -> float:
    """Time to mask *unit* repeated to *size* characters, once."""
    text = (unit * (size // len(unit) + 1))[:size]
    started = time.perf_counter()
    mask_sensitive(None, "info", {"event": text})
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-kb", type=int, default=1024, help="largest size, kB")
    parser.add_argument("--rounds", type=int, default=3, help="timings per size (best is kept)")
    parser.add_argument("--no-target", action="store_true",
                        help="report the growth without enforcing its limit (a smoke run: too "
                        "short, on a loaded machine)")
    args = parser.parse_args(argv)
    sizes = [kb for kb in SIZES_KB if kb <= args.max_kb]
    inputs = [("baseline", BASELINE), *((repr(unit), unit) for unit in HOSTILE)]
    # Rounds outermost: a burst of load from other jobs hits every input and size alike
    # instead of all rounds of one of them.
    best = {(name, kb): float("inf") for name, _ in inputs for kb in sizes}
    for _ in range(args.rounds):
        for kb in sizes:
            for name, unit in inputs:
                best[name, kb] = min(best[name, kb], seconds(unit, kb * 1024))
    reference_kb = CHECK_FROM_KB if CHECK_FROM_KB in sizes else sizes[0]
    print(f"python {platform.python_version()} on {platform.machine()}, best of {args.rounds}; "
          f"ns per byte", flush=True)
    print(f"{'input':14}" + "".join(f"{kb:>9} kB" for kb in sizes) + f"{'growth':>9}")
    failed = []
    for name, _ in inputs:
        figures = [best[name, kb] / (kb * 1024) * 1e9 for kb in sizes]
        growth = figures[-1] / figures[sizes.index(reference_kb)]
        if growth > MAX_GROWTH:
            failed.append(name)
        print(f"{name:14}" + "".join(f"{f:12.0f}" for f in figures) + f"{growth:9.2f}")
    print(f"growth = ns/byte at {sizes[-1]} kB / ns/byte at {reference_kb} kB "
          f"(linear: ~1, quadratic: the size ratio; check: <= {MAX_GROWTH:g})")
    if failed:
        verdict = "MISSED (not enforced: --no-target)" if args.no_target else "FAILED"
        print(f"{verdict}: masking grows faster than linear for {', '.join(failed)}")
        return 0 if args.no_target else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
