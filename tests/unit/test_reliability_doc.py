"""docs/reliability.md is the rendering of the figures the fault tests recorded, nothing else."""

from __future__ import annotations

import json

from tests.faults.results import CASES, DOC, RESULTS, render


def test_reliability_doc_matches_the_recorded_figures() -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    assert DOC.read_text() == render(results), (
        "docs/reliability.md is stale: run `python -m tests.faults.results > "
        "docs/reliability.md` after a recording run (FAULTS_RECORD=1 pytest tests/faults)")


def test_reliability_results_name_only_known_cases_with_every_column() -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    known = {case.key for case in CASES}
    assert set(results) <= known, set(results) - known
    for key, figures in results.items():
        assert {"observed", "lost", "duplicates", "recovery_seconds"} <= set(figures), key


def test_reliability_render_says_not_run_for_a_case_without_figures() -> None:
    text = render({})
    assert text.count("| not run |") == len(CASES)
    filled = render({"partition": {"observed": "seen", "lost": 0, "duplicates": 3,
                                   "recovery_seconds": 1.5}})
    assert "| seen | 0 | 3 | 1.5 |" in filled
