"""docs/mapping.md keeps up with the code: every transform and rule key is documented."""

from __future__ import annotations

from pathlib import Path

from middleware.mapping.functions import REGISTRY
from middleware.mapping.spec import FieldRule, Lookup

DOC = (Path(__file__).parents[3] / "docs" / "mapping.md").read_text(encoding="utf-8")


def test_docs_mapping_has_a_row_for_every_transform() -> None:
    missing = [name for name in REGISTRY if f"| `{name}` |" not in DOC]
    assert not missing, f"transforms missing from docs/mapping.md: {missing}"


def test_docs_mapping_names_every_rule_key() -> None:
    keys = [f.alias or n for n, f in {**FieldRule.model_fields, **Lookup.model_fields}.items()]
    missing = [key for key in keys if f"`{key}`" not in DOC]
    assert not missing, f"rule keys missing from docs/mapping.md: {missing}"
