from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from middleware.errors import ConfigError, SchemaError
from middleware.validation import load_schema

SCHEMA = {
    "type": "object",
    "required": ["id", "lines"],
    "properties": {
        "id": {"type": "string", "pattern": "^C-"},
        "lines": {"type": "array", "items": {"type": "object", "required": ["qty"],
                                             "properties": {"qty": {"type": "integer"}}}},
    },
}


@pytest.fixture
def schema(tmp_path: Path) -> Path:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(SCHEMA))
    return path


def test_load_schema_error_path_is_dotted(schema: Path) -> None:
    check = load_schema(schema)
    with pytest.raises(SchemaError) as caught:
        check({"id": "C-1", "lines": [{"qty": 1}, {"qty": 1}, {"qty": "SECRET-7"}]})
    assert caught.value.path == "lines.2.qty"
    assert caught.value.schema == "s.json"
    assert "must be of type integer" in str(caught.value)


def test_load_schema_message_never_quotes_the_payload(schema: Path) -> None:
    with pytest.raises(SchemaError) as caught:
        load_schema(schema)({"id": "SECRET-ID", "lines": []})
    assert "SECRET" not in str(caught.value)
    assert "pattern" in str(caught.value)


def test_load_schema_names_missing_fields_and_counts_more(schema: Path) -> None:
    with pytest.raises(SchemaError) as caught:
        load_schema(schema)({"lines": [{}]})
    assert "missing required field(s) id" in str(caught.value)
    assert "more problem" in str(caught.value)


def test_load_schema_accepts_valid_payload(schema: Path) -> None:
    load_schema(schema)({"id": "C-1", "lines": [{"qty": 2}]})


def test_load_schema_is_cached_until_the_file_changes(schema: Path) -> None:
    first = load_schema(schema)
    assert load_schema(schema) is first
    schema.write_text(json.dumps({"type": "object"}))
    os.utime(schema, ns=(1, 10**18))
    assert load_schema(schema) is not first


def test_load_schema_bad_files_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "invalid.json").write_text(json.dumps({"type": 5}))
    for name, message in [("broken.json", "not valid JSON"), ("invalid.json", "not a valid JSON"),
                          ("absent.json", "cannot read schema")]:
        with pytest.raises(ConfigError, match=message):
            load_schema(tmp_path / name)
