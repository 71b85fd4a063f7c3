"""A loaded mapping: compiled rules, schema checks, the derived reverse, and capture.

Everything here is pure once constructed: the loader did the file reading, and the xref store
is reached only through the ``lookup`` callable the caller passes to ``apply``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from middleware.errors import ConfigError, MappingError
from middleware.mapping.engine import Builder, Lookup, Where, compile_rules, parse_xref
from middleware.mapping.functions import to_text
from middleware.mapping.paths import compile_getter, parse_path
from middleware.mapping.reverse import reverse_spec
from middleware.mapping.spec import FieldRule, MappingSpec
from middleware.validation import SchemaCheck

__all__ = ["Link", "Mapping"]

Link = tuple[str, str, str, str]


def _uses_xref(fields: dict[str, FieldRule] | None) -> bool:
    return any(rule.lookup is not None or _uses_xref(rule.fields)
               for rule in (fields or {}).values())


class Mapping:
    """One mapping file, compiled; ``apply`` turns a source payload into a target payload."""

    def __init__(
        self,
        spec: MappingSpec,
        path: Path,
        build: Builder,
        where: Where,
        source_check: SchemaCheck | None = None,
        target_check: SchemaCheck | None = None,
        reversed_from: Mapping | None = None,
    ) -> None:
        self.spec = spec
        self.name = spec.mapping
        self.path = path
        self.version = ""
        """Hash of the file and its schemas (set by the loader); lineage records it."""
        self._build = build
        self._where = where
        self._source_check = source_check
        self._target_check = target_check
        self._reverse = reversed_from
        self._captures = [
            (*parse_xref(c.xref), compile_getter(parse_path(c.source)),
             compile_getter(parse_path(c.response)))
            for c in spec.capture
        ]
        self.uses_xref = _uses_xref(spec.fields)
        """Whether applying it may look up cross-references (store I/O: not on a loop thread)."""

    def __repr__(self) -> str:
        return f"<Mapping {self.name} from {self.path}>"

    def apply(self, source: dict[str, Any], lookup: Lookup | None = None) -> dict[str, Any]:
        """Map one payload; raises MappingError (or XrefMissing) naming rule and source path."""
        if not isinstance(source, dict):
            raise MappingError(f"mapping {self.name!r}: the source payload must be a JSON "
                               f"object", mapping=self.name)
        return self._build(source, (source, lookup))

    def validate_source(self, payload: Any) -> None:
        """SchemaError with the failing path; a no-op when the mapping declares no schema."""
        if self._source_check is not None:
            self._source_check(payload)

    def validate_target(self, payload: Any) -> None:
        """SchemaError with the failing path; a no-op when the mapping declares no schema."""
        if self._target_check is not None:
            self._target_check(payload)

    def reverse(self) -> Mapping:
        """The derived other direction (cached); ConfigError naming a non-invertible rule."""
        if self._reverse is None:
            spec, where, problems = reverse_spec(self.spec, self._where)
            build, more = compile_rules(spec.mapping, spec.fields, where, reverse=True)
            if problems or more:
                raise ConfigError(problems + more)
            self._reverse = Mapping(spec, self.path, build, where, self._target_check,
                                    self._source_check, reversed_from=self)
            self._reverse.version = self.version
        return self._reverse

    def capture(self, source: dict[str, Any], response: Any) -> list[Link]:
        """Links to store after delivery, e.g. the account id the ERP returned.

        A capture whose key is absent on either side is skipped: the delivery succeeded, and
        failing now would only re-send it.
        """
        links = []
        for from_ns, to_ns, source_key, response_key in self._captures:
            key_a, key_b = source_key(source), response_key(response)
            if key_a is not None and key_b is not None:
                links.append((from_ns, to_text(key_a), to_ns, to_text(key_b)))
        return links
