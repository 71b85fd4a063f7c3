"""Every case of every ``*.test.yaml`` under mappings/ and the demo's config (package data)
as its own pytest test."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from middleware.mapping.testing import CaseResult, discover, run_file

ROOT = Path(__file__).parents[2]
MAPPINGS = ROOT / "mappings"
ROOTS = [MAPPINGS, ROOT / "silobridge_demo" / "config"]


def _cases() -> list[CaseResult]:
    return [result for path in discover(ROOTS) for result in run_file(path)]


CASES = _cases()


def mapping_files() -> set[Path]:
    """YAML files under the roots that are mapping files (configs live there too)."""
    return {p for root in ROOTS for p in root.rglob("*.yaml")
            if not p.name.endswith(".test.yaml") and "fields" in (yaml.safe_load(p.read_text())
                                                                 or {})}


def test_mapping_examples_exist_for_every_mapping() -> None:
    mappings = mapping_files()
    assert len(mappings) >= 7
    tested = {p.with_name(p.name.replace(".test.yaml", ".yaml")) for p in discover(ROOTS)}
    assert mappings <= tested, f"mappings without a .test.yaml: {sorted(mappings - tested)}"


@pytest.mark.parametrize(
    "case", CASES, ids=[f"{c.file.relative_to(ROOT)}::{c.name}" for c in CASES]
)
def test_mapping_example_case_passes(case: CaseResult) -> None:
    assert case.ok, case.detail
