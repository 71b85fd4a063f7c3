"""Loading mapping files: every problem at once, with file, line, path and a fix."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from middleware.errors import ConfigError
from middleware.mapping import MappingSet, load_mapping

Write = Callable[..., Path]


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_mapping(path)
    return [str(p) for p in caught.value.problems]


def test_load_mapping_reports_all_problems_with_file_line_and_field(write: Write) -> None:
    path = write("""
        mapping: orders
        fields:
          ok: a
          a: {from: x, tranform: [upper]}
          b: {from: y, transform: [uper]}
          c: {expr: "source.x =="}
          d: {from: "a..b"}
          e: {from: z, lookup: {xref: "crm.customer => erp", on_missing: later}}
          f: {from: x, value: 1}
          g: {each: items, fields: {q: {from: qty, transform: [{timezone: {to: Europe/Berln}}]}}}
    """)
    found = problems_of(path)
    file = str(path)
    assert f"{file}:4: fields.a.tranform: unknown key 'tranform' (did you mean 'transform'?)" \
        in found
    assert f"{file}:5: fields.b.transform.0: unknown transform 'uper' (did you mean 'upper'?)" \
        in found
    assert any(p.startswith(f"{file}:6: fields.c.expr: invalid CEL expression") for p in found)
    assert any(p.startswith(f"{file}:7: fields.d.from: bad path segment") for p in found)
    assert any(p.startswith(f"{file}:8: fields.e.lookup.xref: bad format") for p in found)
    assert any(p.startswith(f"{file}:8: fields.e.lookup.on_missing:") for p in found)
    assert any(p.startswith(f"{file}:9: fields.f: choose one of") for p in found)
    assert any("fields.g.fields.q.transform.0" in p and "Europe/Berlin" in p for p in found)
    assert len(found) == 8


def test_load_mapping_did_you_mean_for_top_level_and_lookup_keys(write: Write) -> None:
    found = problems_of(write("""
        mapping: t
        feilds: {}
        fields:
          a: {from: x, lookup: {xref: a.b -> c.d, on_mising: retry}}
    """))
    assert any("unknown key 'feilds' (did you mean 'fields'?)" in p for p in found)
    assert any("unknown key 'on_mising' (did you mean 'on_missing'?)" in p for p in found)


def test_load_mapping_yaml_syntax_error_has_line(write: Write) -> None:
    found = problems_of(write("mapping: t\nfields:\n  a: {from: x\n  b: y\n"))
    assert len(found) == 1
    assert "YAML syntax error" in found[0] and ".yaml:" in found[0]


def test_load_mapping_missing_schema_names_the_key(write: Write) -> None:
    found = problems_of(write("mapping: t\nsource: {schema: nope.json}\nfields: {a: b}\n"))
    assert found[0].startswith(f"{found[0].split(':')[0]}:2: source.schema: cannot read schema")


def test_load_mapping_invalid_schema_is_a_load_error(write: Write) -> None:
    write(json.dumps({"type": "objekt"}), "bad.json")
    found = problems_of(write("mapping: t\ntarget: {schema: bad.json}\nfields: {a: b}\n"))
    assert "not a valid JSON Schema" in found[0]


def test_load_mapping_not_a_mapping_document(write: Write) -> None:
    assert "'mapping:' and 'fields:'" in problems_of(write("- just\n- a list\n"))[0]


def test_load_mapping_bad_mapping_name_and_capture(write: Write) -> None:
    found = problems_of(write("""
        mapping: Has Spaces
        fields: {a: b}
        capture: [{xref: a.b -> c.d, source: "x..y", response: id}]
    """))
    assert any("mapping: bad format" in p for p in found)


def reloads(outcome: str) -> float:
    return REGISTRY.get_sample_value("silobridge_mapping_reloads_total",
                                     {"outcome": outcome}) or 0.0


def test_mapping_set_reload_picks_up_a_valid_edit(write: Write) -> None:
    path = write("mapping: t\nfields: {a: x}\n")
    mappings = MappingSet([path])
    before = reloads("success")
    assert mappings.reload() == []
    assert reloads("success") == before  # unchanged file: nothing reloaded
    write("mapping: t\nfields: {a: y}\n")
    assert mappings.reload() == []
    assert mappings.get(path).apply({"x": 1, "y": 2}) == {"a": 2}
    assert reloads("success") == before + 1


def test_mapping_set_reload_keeps_old_mapping_on_bad_edit(write: Write) -> None:
    path = write("mapping: t\nfields: {a: x}\n")
    mappings = MappingSet([path])
    old = mappings.get(path)
    before = reloads("failure")
    write("mapping: t\nfields: {a: {from: x, transform: [uper]}}\n")
    problems = mappings.reload()
    assert [p.path for p in problems] == ["fields.a.transform.0"]
    assert mappings.get(path) is old
    assert reloads("failure") == before + 1
    # the same broken file is reported once, not at every poll
    assert mappings.reload() == []
    write("mapping: t\nfields: {a: {from: x, transform: [upper]}}\n")
    assert mappings.reload() == []
    assert mappings.get(path).apply({"x": "q"}) == {"a": "Q"}


def test_mapping_set_reload_notices_schema_change(write: Write) -> None:
    write(json.dumps({"type": "object"}), "s.json")
    path = write("mapping: t\nsource: {schema: s.json}\nfields: {a: x}\n")
    mappings = MappingSet([path])
    mappings.get(path).validate_source({"x": 1})
    schema = write(json.dumps({"type": "object", "required": ["y"]}), "s.json")
    os.utime(schema, ns=(1, 10**18))  # a different mtime, whatever the clock resolution
    mappings.reload()
    with pytest.raises(Exception, match="missing required field"):
        mappings.get(path).validate_source({"x": 1})


def test_mapping_set_init_reports_problems_of_all_files(write: Write) -> None:
    good = write("mapping: t\nfields: {a: x}\n", "good.yaml")
    bad1 = write("mapping: t\nfields: {a: {from: x, transform: [nope]}}\n", "bad1.yaml")
    bad2 = write("mapping: t\nfield: {}\n", "bad2.yaml")
    with pytest.raises(ConfigError) as caught:
        MappingSet([good, bad1, bad2])
    assert {Path(p.file).name for p in caught.value.problems} == {"bad1.yaml", "bad2.yaml"}


def test_mapping_set_reload_settle_waits_until_the_file_stops_changing(write: Write) -> None:
    path = write("mapping: t\nfields: {a: x}\n")
    mappings = MappingSet([path])
    write("mapping: t\nfields: {a: y")  # an editor caught half-way through saving
    assert mappings.reload(settle=True) == []
    write("mapping: t\nfields: {a: y}\n")  # the save completes before the next poll
    assert mappings.reload(settle=True) == []
    assert mappings.get(path).apply({"x": 1, "y": 2}) == {"a": 1}  # not settled yet
    assert mappings.reload(settle=True) == []
    assert mappings.get(path).apply({"x": 1, "y": 2}) == {"a": 2}
