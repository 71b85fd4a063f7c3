"""silobridge benchmarks: each one runs its baseline and silobridge back to back in one run.

``python -m bench`` (or ``make bench``) runs them all; see bench/README.md and bench/RESULTS.md.
"""
