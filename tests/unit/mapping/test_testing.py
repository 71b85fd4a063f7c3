"""The *.test.yaml runner: passes, readable diffs, expected errors, broken files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from middleware.errors import ConfigError
from middleware.mapping.testing import discover, link_lookup, run_file

Write = Callable[..., Path]
MAPPING = """
    mapping: t
    fields:
      code: {from: id, transform: [{prefix: "CRM-"}]}
      acct: {from: id, lookup: {xref: crm.customer -> erp.account, on_missing: retry}}
      n: {from: n, transform: [decimal]}
"""


def test_run_file_passes_matching_cases(write: Write) -> None:
    write(MAPPING, "m.yaml")
    path = write("""
        xref: ["crm.customer:C-1 <-> erp.account:A-1"]
        cases:
          - name: ok
            input: {id: C-1}
            expect: {code: CRM-C-1, acct: A-1}
          - name: retry
            input: {id: C-2}
            expect_error: {type: XrefMissing, rule: acct, retryable: true}
          - name: case links
            xref: ["crm.customer:C-3 <-> erp.account:A-3"]
            input: {id: C-3}
            expect: {code: CRM-C-3, acct: A-3}
    """, "m.test.yaml")
    assert [(r.name, r.ok) for r in run_file(path)] == [
        ("ok", True), ("retry", True), ("case links", True)]


def test_run_file_failure_shows_unified_diff(write: Write) -> None:
    write(MAPPING, "m.yaml")
    path = write("""
        xref: ["crm.customer:C-1 <-> erp.account:A-1"]
        cases:
          - {name: wrong, input: {id: C-1}, expect: {code: CRM-X, acct: A-1}}
    """, "m.test.yaml")
    (result,) = run_file(path)
    assert not result.ok
    assert '-  "code": "CRM-X"' in result.detail
    assert '+  "code": "CRM-C-1"' in result.detail


def test_run_file_reports_mismatching_expected_error(write: Write) -> None:
    write(MAPPING, "m.yaml")
    path = write("""
        cases:
          - {name: e, input: {id: C-9}, expect_error: {type: XrefMissing, retryable: false}}
          - {name: f, input: {id: C-9}, expect: {}}
          - {name: g, input: {}, expect_error: {type: MappingError}}
    """, "m.test.yaml")
    results = run_file(path)
    assert "retryable: expected False, got True" in results[0].detail
    assert "unexpected XrefMissing" in results[1].detail
    assert "but the mapping succeeded" in results[2].detail


def test_run_file_flags_output_that_is_not_json(write: Write) -> None:
    write(MAPPING, "m.yaml")
    path = write("cases: [{name: d, input: {n: '1.5'}, expect: {n: 1.5}}]\n", "m.test.yaml")
    (result,) = run_file(path)
    assert "'n' is a Decimal, not JSON" in result.detail


def test_run_file_bad_test_file_is_config_error_with_line(write: Write) -> None:
    write(MAPPING, "m.yaml")
    path = write("cases:\n  - {name: x, inptu: {}}\n", "m.test.yaml")
    with pytest.raises(ConfigError) as caught:
        run_file(path)
    assert caught.value.problems[0].line == 2
    assert "did you mean 'input'" in caught.value.problems[0].message


def test_discover_finds_tests_in_dirs_files_and_beside_mappings(write: Write,
                                                               tmp_path: Path) -> None:
    mapping = write(MAPPING, "m.yaml")
    test = write("cases: [{name: x, input: {}}]\n", "m.test.yaml")
    assert discover([tmp_path]) == [test]
    assert discover([mapping]) == [test]
    assert discover([test]) == [test]


def test_link_lookup_works_both_ways_and_rejects_bad_links() -> None:
    lookup = link_lookup(["crm.customer:C-1 <-> erp.account:A-1"])
    assert lookup("erp.account", "A-1", "crm.customer") == "C-1"
    with pytest.raises(ValueError, match="bad link"):
        link_lookup(["C-1 -> A-1"])
