"""Case 12, the CI-sized soak: ``bench/soak.py`` for a short run at a lower rate, every fault of
its catalogue once (the 30-minute run at 500 events/s is a benchmark: bench/RESULTS.md)."""

from __future__ import annotations

from pathlib import Path

from bench.soak import FAULTS, run
from tests.faults.conftest import size
from tests.faults.results import record


def test_soak_loses_nothing_recovers_lag_and_leaks_nothing(tmp_path: Path) -> None:
    # Given webhooks at a steady rate through the daemon to a REST target, and every fault of
    # the catalogue in turn (a silent broker partition, resets, a target that hangs, refuses,
    # is slow, cuts its answer)
    # (six faults 11 s apart, the last injected at 66 s and healed 11 s before the end: each
    # injected once and its recovery seen, which is what the CI run's length is for)
    minutes, rate = size("soak_minutes", 1.35), size("soak_rate", 100)
    every, seconds = size("soak_fault_every", 11), size("soak_fault_seconds", 4)
    soak = run(minutes, rate, every, seconds, tmp_path, log=lambda _line: None)
    summary = soak.summary()
    # Then nothing accepted is lost, every fault was injected and the lag recovered in time
    assert soak.lost == 0, summary
    assert len(soak.faults) >= len(FAULTS), soak.faults
    recoveries = [f["lag_recovered_s"] for f in soak.faults]
    assert all(r is not None and r <= 30 for r in recoveries), soak.faults
    # And the daemon holds no more descriptors or threads at the end than after the warm-up
    fds, threads = summary["fds"], summary["threads"]
    assert fds[2] <= fds[0] + 8, summary
    assert threads[2] <= threads[0] + 2, summary
    record("soak", observed=f"CI size: {minutes:g} min at {rate:g} events/s, a fault every "
           f"{every:g} s for {seconds:g} s ({', '.join(f['fault'] for f in soak.faults)}): "
           f"{soak.accepted} accepted, {soak.refused} refused and sent again; lag under 1 s "
           f"again {min(recoveries):g}-{max(recoveries):g} s after each fault; fds "
           f"{fds[0]:g} -> {fds[2]:g}, threads {threads[0]:g} -> {threads[2]:g} (after "
           f"warm-up -> end); RSS {summary['rss_mib'][0]} -> {summary['rss_mib'][2]} MiB; "
           "longer run: bench/RESULTS.md", lost=soak.lost, duplicates=soak.duplicates,
           recovery_seconds=max(recoveries))
