"""Run the ``*.test.yaml`` cases beside a mapping, without a broker.

A test file lists input -> expected output cases (or an expected error) for its sibling mapping
``x.yaml``, plus cross-references the cases may look up. Cases run the way the pipeline runs a
message: source schema check, mapping (or its reverse), target schema check. The output must
also be plain JSON (a ``Decimal`` left in a field would fail later, at delivery). Failures come
with a unified diff of expected against actual, keys sorted, so a reader sees the one changed
line. ``silobridge mapping test`` and pytest both run these files.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from middleware.errors import ConfigError, MappingError, ProcessingError, SchemaError, XrefMissing
from middleware.mapping.compiled import Mapping
from middleware.mapping.loader import load_mapping
from middleware.mapping.problems import problems_from
from middleware.yamlfile import load_yaml

__all__ = ["CaseResult", "TestFile", "discover", "link_lookup", "run_file"]

_ERRORS = {"MappingError": MappingError, "XrefMissing": XrefMissing, "SchemaError": SchemaError}
_LINK = re.compile(r"^\s*([\w-]+\.[\w-]+):(\S+)\s*<->\s*([\w-]+\.[\w-]+):(\S+)\s*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExpectedError(_Model):
    """What a failing case must raise; every given key must match."""

    type: Literal["MappingError", "XrefMissing", "SchemaError"] = Field(
        "MappingError", description="Error class.")
    rule: str | None = Field(None, description="Rule (target field path) named by the error.")
    path: str | None = Field(None, description="Source path (or schema path) named.")
    contains: str | None = Field(None, description="Text the message must contain.")
    retryable: bool | None = Field(None, description="Whether it must be retryable.")


class Case(_Model):
    """One input and what must come out of it."""

    name: str = Field(description="Shown in reports.")
    input: Any = Field(None, description="Source payload, inline.")
    input_file: str | None = Field(None, description="Source payload JSON file, relative.")
    reverse: bool = Field(False, description="Apply the derived reverse mapping.")
    expect: Any = Field(None, description="Expected target payload.")
    expect_error: ExpectedError | None = Field(None, description="Expected failure instead.")
    xref: list[str] = Field(default_factory=list, description="Links for this case only.")


class TestFile(_Model):
    """A mapping test file."""

    __test__ = False  # not a pytest class
    mapping: str | None = Field(None, description="Mapping file; default: x.yaml for x.test.yaml")
    xref: list[str] = Field(default_factory=list,
                            description="Links 'crm.customer:C-1 <-> erp.account:A-7'.")
    cases: list[Case] = Field(description="The cases.", min_length=1)


@dataclass(frozen=True)
class CaseResult:
    """Outcome of one case; detail is the diff or the unexpected error."""

    file: Path
    name: str
    ok: bool
    detail: str = ""


def discover(paths: list[Path]) -> list[Path]:
    """Test files under directories, or given directly, or beside given mapping files."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(path.rglob("*.test.yaml"))
        elif path.name.endswith(".test.yaml"):
            found.append(path)
        elif path.with_name(path.name.removesuffix(".yaml") + ".test.yaml").is_file():
            found.append(path.with_name(path.name.removesuffix(".yaml") + ".test.yaml"))
    return found


def run_file(path: Path) -> list[CaseResult]:
    """Run every case of one test file; ConfigError when the file or its mapping is broken."""
    located = load_yaml(path)
    try:
        spec = TestFile.model_validate(located.data)
    except ValidationError as exc:
        raise ConfigError(problems_from(exc, located, TestFile)) from None
    mapping = load_mapping(path.parent / (spec.mapping or path.name.replace(".test.yaml",
                                                                           ".yaml")))
    problems = [located.problem(("xref", i), "write 'ns.entity:KEY <-> ns.entity:KEY'")
                for i, link in enumerate(spec.xref) if not _LINK.match(link)]
    if problems:
        raise ConfigError(problems)
    return [_run_case(path, mapping, case, spec.xref) for case in spec.cases]


def _run_case(path: Path, mapping: Mapping, case: Case, links: list[str]) -> CaseResult:
    def result(ok: bool, detail: str = "") -> CaseResult:
        return CaseResult(path, case.name, ok, detail)

    try:
        source = _plain(_input(path, case))
        chosen = mapping.reverse() if case.reverse else mapping
        chosen.validate_source(source)
        actual = chosen.apply(source, link_lookup([*links, *case.xref]))
        chosen.validate_target(actual)
    except (ProcessingError, ConfigError) as exc:
        if case.expect_error is None:
            return result(False, f"unexpected {type(exc).__name__}: {exc}")
        mismatch = _mismatch(case.expect_error, exc)
        return result(not mismatch, mismatch)
    if case.expect_error is not None:
        return result(False, f"expected {case.expect_error.type}, but the mapping succeeded")
    problem = _not_json(actual, "")
    if problem:
        return result(False, problem)
    return result(actual == _plain(case.expect), _diff(_plain(case.expect), actual))


def _input(path: Path, case: Case) -> Any:
    if case.input_file is None:
        return case.input
    return json.loads((path.parent / case.input_file).read_text(encoding="utf-8"))


def link_lookup(links: list[str]) -> Callable[[str, str, str], str | None]:
    """An in-memory lookup over links written 'crm.customer:C-1 <-> erp.account:A-7'."""
    table: dict[tuple[str, str, str], str] = {}
    for link in links:
        match = _LINK.match(link)
        if match is None:
            raise ValueError(f"bad link {link!r}; write 'ns.entity:KEY <-> ns.entity:KEY'")
        ns_a, key_a, ns_b, key_b = match.groups()
        table[ns_a, key_a, ns_b] = key_b
        table[ns_b, key_b, ns_a] = key_a
    return lambda from_ns, key, to_ns: table.get((from_ns, key, to_ns))


def _mismatch(expected: ExpectedError, exc: Exception) -> str:
    wrong = []
    if not isinstance(exc, _ERRORS[expected.type]):
        wrong.append(f"type: expected {expected.type}, got {type(exc).__name__}")
    for key in ("rule", "path", "retryable"):
        want, have = getattr(expected, key), getattr(exc, key, None)
        if want is not None and want != have:
            wrong.append(f"{key}: expected {want!r}, got {have!r}")
    if expected.contains is not None and expected.contains not in str(exc):
        wrong.append(f"message does not contain {expected.contains!r}: {exc}")
    return "; ".join(wrong)


def _plain(value: Any) -> Any:
    """YAML dates as the ISO text a JSON payload would carry."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value.isoformat() if isinstance(value, date) else value


def _not_json(value: Any, where: str) -> str:
    if isinstance(value, dict):
        return next((p for k, v in value.items() if (p := _not_json(v, f"{where}.{k}"))), "")
    if isinstance(value, list):
        return next((p for i, v in enumerate(value) if (p := _not_json(v, f"{where}[{i}]"))), "")
    if value is None or isinstance(value, str | int | float | bool):
        return ""
    return (f"output {where.lstrip('.')!r} is a {type(value).__name__}, not JSON; end its "
            f"transforms with str, float or format_datetime")


def _diff(expected: Any, actual: Any) -> str:
    def dump(value: Any) -> list[str]:
        return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).splitlines()

    return "\n".join(difflib.unified_diff(dump(expected), dump(actual), "expected", "actual",
                                          lineterm=""))
