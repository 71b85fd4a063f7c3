"""The mapping studio's work on files: read a route's mapping with the fields of its source and
target schemas, check a candidate text as the CLI would (every problem, with line and path),
run it on a sample or on the mapping's ``*.test.yaml`` cases, and save it.

A candidate is checked by writing it beside the real file (so relative schema paths resolve)
under a hidden temporary name and loading it with the CLI's loader; the real file is replaced
only by a complete, valid text, atomically (``os.replace``), so the daemon's file watcher
hot-reloads either the old or the new mapping, never half of one. Links chosen in the studio
are written with ruamel.yaml's round-trip mode, which keeps comments, key order and quoting.
Everything here touches files: the API runs it on worker threads.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from middleware.errors import ConfigError, Problem, ProcessingError
from middleware.mapping import Mapping
from middleware.mapping.functions import REGISTRY
from middleware.mapping.loader import load_mapping
from middleware.mapping.testing import run_file

__all__ = ["TRANSFORMS", "Link", "Studio", "schema_fields", "with_links"]

TRANSFORMS = [{"name": t.name, "summary": t.summary, "example": t.example,
               "argument": t.arg is not None} for t in REGISTRY.values()]
"""The transforms the studio offers for a link, from the one registry the engine uses."""


@dataclass(frozen=True)
class Link:
    """A target field taking a source field, and what the studio chose to do on the way.

    For ``transform``, ``map``, ``lookup`` and ``when``: None leaves what the rule has, an empty
    value removes it, anything else replaces it.
    """

    target: str
    source: str
    transform: list[str | dict[str, Any]] | None = None
    map: dict[str, Any] | None = None
    lookup: dict[str, Any] | None = None
    when: str | None = None
    else_: Any = None

    def extras(self) -> dict[str, Any]:
        """The rule keys this link sets (a falsy value: the key is removed)."""
        chosen: dict[str, Any] = {"transform": self.transform, "map": self.map,
                                  "lookup": self.lookup, "when": self.when}
        found = {key: value for key, value in chosen.items() if value is not None}
        if self.when is not None:  # a condition removed takes its 'else' with it
            found["else"] = self.else_ if self.when else None
        return found


def schema_fields(schema: Any, prefix: str = "") -> list[str]:
    """Dotted paths of a JSON Schema's properties (``lines[].sku`` inside arrays)."""
    if not isinstance(schema, dict):
        return []
    found: list[str] = []
    for name, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}{name}"
        found.append(path)
        if isinstance(sub, dict) and sub.get("type") == "array":
            found += schema_fields(sub.get("items"), f"{path}[].")
        else:
            found += schema_fields(sub, f"{path}.")
    return found


def with_links(text: str, links: list[Link]) -> str:
    """``text`` with each link written as a field rule, comments and order kept.

    A target without a rule gets a plain copy (``target: source``); a target with a rule keeps
    its transforms and gets the new ``from``. What a link adds (transforms, a value map, a
    cross-reference lookup, a condition) turns a plain copy into a rule with those keys.
    """
    yaml = YAML()  # round-trip
    yaml.preserve_quotes = True
    document = yaml.load(text)
    if not isinstance(document, dict):
        raise ConfigError([Problem("mapping", None, "", "the mapping is not a YAML mapping")])
    fields = document.get("fields")
    if fields is None:
        fields = document["fields"] = CommentedMap()
    for link in links:
        rule = fields.get(link.target)
        extras = link.extras()
        if not isinstance(rule, dict) and extras:
            rule = fields[link.target] = CommentedMap()
        if isinstance(rule, dict):
            rule["from"] = link.source
            for other in ("value", "expr"):
                rule.pop(other, None)
            for key, value in extras.items():
                if value or (key == "else" and value is not None):
                    rule[key] = value
                else:
                    rule.pop(key, None)
        else:
            fields[link.target] = link.source
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue()


class Studio:
    """The mapping files of the routes, by route name."""

    def __init__(self, files: dict[str, Path]) -> None:
        self._files = files

    def path(self, route: str) -> Path | None:
        return self._files.get(route)

    def read(self, route: str) -> dict[str, Any]:
        path = self._require(route)
        text = path.read_text(encoding="utf-8")
        answer: dict[str, Any] = {"route": route, "file": path.name, "yaml": text,
                                  "source_fields": [], "target_fields": [], "fields": {},
                                  "problems": [], "transforms": TRANSFORMS}
        try:
            mapping = load_mapping(path)
        except ConfigError as exc:
            answer["problems"] = [_problem(p) for p in exc.problems]
            return answer
        answer["fields"] = {name: _rule(rule) for name, rule in mapping.spec.fields.items()}
        for side in ("source", "target"):
            declared = getattr(mapping.spec, side).schema_
            if declared:
                schema = orjson.loads((path.parent / declared).read_bytes())
                answer[f"{side}_fields"] = schema_fields(schema)
        return answer

    def check(self, route: str, text: str) -> list[dict[str, Any]]:
        """The CLI's problems for a candidate text (empty: it is valid)."""
        with self._candidate(route, text) as (candidate, _test):
            try:
                load_mapping(candidate)
            except ConfigError as exc:
                return [_problem(p) for p in exc.problems]
        return []

    def preview(self, route: str, text: str | None, sample: Any) -> dict[str, Any]:
        """What the candidate (or the saved mapping) makes of a sample payload."""
        with self._candidate(route, text) as (candidate, _test):
            try:
                mapping: Mapping = load_mapping(candidate)
            except ConfigError as exc:
                return {"problems": [_problem(p) for p in exc.problems]}
            try:
                mapping.validate_source(sample)
                output = mapping.apply(sample)
                mapping.validate_target(output)
            except (ProcessingError, ConfigError) as exc:
                return {"error": f"{type(exc).__name__}: {exc}"}
        return {"output": orjson.loads(orjson.dumps(output, default=str))}

    def test(self, route: str, text: str | None) -> dict[str, Any]:
        """The mapping's ``*.test.yaml`` cases run against the candidate (or the saved one)."""
        with self._candidate(route, text) as (_candidate, test):
            if test is None:
                return {"results": [], "note": "this mapping has no .test.yaml beside it"}
            try:
                results = run_file(test)
            except ConfigError as exc:
                return {"problems": [_problem(p) for p in exc.problems]}
        return {"results": [{"name": r.name, "ok": r.ok, "detail": r.detail} for r in results]}

    def save(self, route: str, text: str) -> tuple[str, list[dict[str, Any]]]:
        """Replace the file when the text is valid; (old text, problems) either way."""
        path = self._require(route)
        before = path.read_text(encoding="utf-8")
        problems = self.check(route, text)
        if not problems:
            temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.saving")
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, path)
        return before, problems

    def _require(self, route: str) -> Path:
        path = self._files.get(route)
        if path is None:
            raise KeyError(route)
        return path

    @contextlib.contextmanager
    def _candidate(self, route: str, text: str | None) -> Iterator[tuple[Path, Path | None]]:
        """The mapping to load (the saved file, or ``text`` in a hidden temporary beside it)
        and its test file (a temporary copy pointing at the candidate when ``text`` is given)."""
        path = self._require(route)
        test = path.with_name(path.name.removesuffix(".yaml") + ".test.yaml")
        if text is None:
            yield path, test if test.is_file() else None
            return
        stem = f".studio-{secrets.token_hex(6)}"
        candidate, candidate_test = path.with_name(f"{stem}.yaml"), None
        try:
            candidate.write_text(text, encoding="utf-8")
            if test.is_file():
                candidate_test = path.with_name(f"{stem}.test.yaml")
                yaml = YAML()
                cases = yaml.load(test.read_text(encoding="utf-8"))
                if isinstance(cases, dict):
                    cases["mapping"] = candidate.name
                with candidate_test.open("w", encoding="utf-8") as out:
                    yaml.dump(cases, out)
            yield candidate, candidate_test
        finally:
            candidate.unlink(missing_ok=True)
            if candidate_test is not None:
                candidate_test.unlink(missing_ok=True)


def _problem(problem: Problem) -> dict[str, Any]:
    return {"line": problem.line, "path": problem.path, "message": problem.message,
            "text": str(problem).split(": ", 1)[-1]}


def _rule(rule: Any) -> Any:
    dump = getattr(rule, "model_dump", None)
    return dump(exclude_defaults=True, by_alias=True) if dump else rule
