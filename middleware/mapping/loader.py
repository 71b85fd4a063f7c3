"""Read mapping files (the only file I/O of the mapping engine) and keep them fresh.

Loading reports every problem of a file at once, each with file, line, dotted path and a fix:
YAML syntax, unknown keys (with "did you mean"), bad transforms, bad CEL, bad paths, missing
schemas. ``MappingSet`` is what a running daemon holds: it reloads changed files and, when an
edit is broken, keeps the mapping that was working so no message is mapped by a half-edited file.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from pathlib import Path

import structlog
from pydantic import ValidationError

from middleware.errors import ConfigError, Problem
from middleware.mapping.compiled import Mapping
from middleware.mapping.engine import compile_rules
from middleware.mapping.paths import PathSyntaxError, parse_path
from middleware.mapping.problems import problems_from
from middleware.mapping.spec import FieldRule, MappingSpec
from middleware.metrics import MAPPING_RELOADS
from middleware.validation import SchemaCheck, load_schema
from middleware.yamlfile import Located, load_yaml

__all__ = ["MappingSet", "load_mapping"]

_log = structlog.get_logger(__name__)


def load_mapping(path: str | Path) -> Mapping:
    """Load and compile one mapping file; ConfigError lists every problem found in it."""
    file = Path(path)
    located = load_yaml(file)
    spec, rules, problems = _spec(located)
    build, more = compile_rules(spec.mapping if spec else file.stem, rules, located)
    problems += more
    if spec is None:
        raise ConfigError(_by_line(problems))
    problems += _capture_problems(spec, located)
    checks: list[SchemaCheck | None] = []
    for side in ("source", "target"):
        declared = getattr(spec, side).schema_
        checks.append(None if declared is None else
                      _schema(file.parent / declared, located, (side, "schema"), problems))
    if problems:
        raise ConfigError(_by_line(problems))
    mapping = Mapping(spec, file, build, located, checks[0], checks[1])
    mapping.version = _fingerprint(mapping)[:16]
    return mapping


def schema_files(mapping: Mapping) -> list[Path]:
    """The schema files a mapping reads, so a reload notices when one of them changes."""
    sides = (mapping.spec.source.schema_, mapping.spec.target.schema_)
    return [mapping.path.parent / name for name in sides if name]


class MappingSet:
    """The mappings a daemon uses, reloadable while workers keep calling ``get``."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self._reloading = threading.Lock()  # the file watcher and SIGHUP may both call reload
        self._mappings: dict[Path, Mapping] = {}
        self._prints: dict[Path, str] = {}
        self._pending: dict[Path, str] = {}  # changes seen once, waiting to settle
        problems: list[Problem] = []
        for path in paths:
            key = Path(path).resolve()
            try:
                self._mappings[key] = load_mapping(path)
            except ConfigError as exc:
                problems += exc.problems
                continue
            self._prints[key] = _fingerprint(self._mappings[key])
        if problems:
            raise ConfigError(problems)

    def get(self, path: Path) -> Mapping:
        """The mapping in force for path (KeyError when it was never loaded).

        Called for every message: a path given already resolved is found without touching
        the filesystem, and the read needs no lock (a reload swaps one dict entry atomically).
        """
        mapping = self._mappings.get(path)
        return mapping if mapping is not None else self._mappings[Path(path).resolve()]

    def reload(self, settle: bool = False) -> list[Problem]:
        """Reload changed files; a broken edit keeps the previous mapping and is returned.

        The caller logs the returned problems (the daemon does, once per problem). A broken
        file is not retried until it changes again, so a bad edit is reported once. A file
        watcher polling on a timer passes ``settle=True``: a change is then loaded only once the
        file is unchanged since the previous poll, so a file caught half-written by an editor
        is never loaded (SIGHUP, an operator's "I am done", reloads at once).
        """
        with self._reloading:
            return self._reload(settle)

    def _reload(self, settle: bool) -> list[Problem]:
        problems: list[Problem] = []
        for key, old in list(self._mappings.items()):
            current = _fingerprint(old)
            if current == self._prints[key]:
                self._pending.pop(key, None)
                continue
            if settle and self._pending.get(key) != current:
                self._pending[key] = current
                continue
            self._pending.pop(key, None)
            try:
                fresh = load_mapping(old.path)
            except ConfigError as exc:
                MAPPING_RELOADS.labels(outcome="failure").inc()
                problems += exc.problems
                self._prints[key] = current
                continue
            self._mappings[key] = fresh
            self._prints[key] = _fingerprint(fresh)
            MAPPING_RELOADS.labels(outcome="success").inc()
            _log.info("mapping.reloaded", file=str(old.path), mapping=fresh.name)
        return problems


def _by_line(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: p.line or 0)


def _fingerprint(mapping: Mapping) -> str:
    """Hash of the mapping file and its schemas; mtime alone misses same-second edits."""
    digest = hashlib.sha256()
    for file in (mapping.path, *schema_files(mapping)):
        try:
            digest.update(file.read_bytes())
        except OSError:
            digest.update(b"<missing>")
    return digest.hexdigest()


def _spec(located: Located) -> tuple[MappingSpec | None, dict[str, FieldRule], list[Problem]]:
    if not isinstance(located.data, dict):
        return None, {}, [located.problem((), "a mapping file is a YAML mapping with "
                                              "'mapping:' and 'fields:' at the top")]
    # Rules are validated one by one so a bad rule does not hide the problems of the others.
    data, rules, problems = dict(located.data), {}, []
    if isinstance(data.get("fields"), dict):
        for name, raw in data["fields"].items():
            try:
                rules[name] = FieldRule.model_validate(raw)
            except ValidationError as exc:
                problems += problems_from(exc, located, FieldRule, ("fields", name))
        data["fields"] = {}
    try:
        spec = MappingSpec.model_validate(data)
    except ValidationError as exc:
        return None, rules, problems + problems_from(exc, located, MappingSpec)
    return spec.model_copy(update={"fields": rules}), rules, problems


def _capture_problems(spec: MappingSpec, located: Located) -> list[Problem]:
    problems = []
    for i, capture in enumerate(spec.capture):
        for key in ("source", "response"):
            try:
                parse_path(getattr(capture, key))
            except PathSyntaxError as exc:
                problems.append(located.problem(("capture", i, key), str(exc)))
    return problems


def _schema(file: Path, located: Located, loc: tuple[str, str],
            problems: list[Problem]) -> SchemaCheck | None:
    try:
        return load_schema(file)
    except ConfigError as exc:
        problems += [located.problem(loc, f"{p.message} ({p.file})") for p in exc.problems]
        return None
