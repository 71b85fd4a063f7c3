"""Enrich config is checked before anything runs: every problem with file, line and a fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.soap.enrich import SoapSystem
from middleware.config.loader import load_config
from middleware.envelope import Envelope
from middleware.errors import ConfigError
from tests.unit.enrich.helpers import system_context

TARGET = {"type": "amqp", "exchange": "x.out", "routing_key": "k"}
SYSTEMS = {"hubspot": {"type": "rest", "base_url": "https://api.hubapi.com"},
           "nav": {"type": "soap", "wsdl": "nav.wsdl"}}


def load(tmp_path: Path, steps: list[dict[str, Any]], systems: Any = None) -> Any:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "systems": SYSTEMS if systems is None else systems,
        "routes": [{"name": "r", "bind": ["hubspot.#"], "target": TARGET, "enrich": steps}],
    }, sort_keys=False))
    return load_config(path)


def problems(tmp_path: Path, steps: list[dict[str, Any]], systems: Any = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, steps, systems)
    return [str(problem) for problem in caught.value.problems]


def test_enrich_config_valid_steps_load_typed(tmp_path: Path) -> None:
    loaded = load(tmp_path, [
        {"system": "hubspot", "get": "/contacts/{payload.objectId}?x={envelope.subject}",
         "into": "contact", "cache": {"ttl": 30}},
        {"system": "nav", "call": {"operation": "Read", "arguments": {"No": "{payload.No}"}},
         "select": "Key", "into": "Customer.Key", "after_mapping": True},
    ])
    config = loaded.config
    assert type(config.systems["hubspot"]).__name__ == "RestSystemConfig"
    assert type(config.systems["nav"]).__name__ == "SoapSystemConfig"
    first, second = config.routes[0].enrich
    assert first.cache is not None and first.cache.max_entries == 1000
    assert second.after_mapping and second.call is not None


def test_enrich_config_unknown_system_names_line_and_the_close_one(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, [{"system": "hubspt", "get": "/x", "into": "c"}])
    assert "config.yaml:" in problem and "routes.0.enrich.0.system" in problem
    assert "no system 'hubspt' (did you mean 'hubspot'?)" in problem
    assert "known: hubspot, nav" in problem
    line = int(problem.split("config.yaml:")[1].split(":")[0])
    text = (tmp_path / "config.yaml").read_text().splitlines()[line - 1]
    assert "hubspt" in text


@pytest.mark.parametrize(("template", "expected"), [
    ("/contacts/{paylod.objectId}", "{paylod.objectId} is no placeholder (did you mean "
                                    "'payload'?)"),
    ("/contacts/{envelope.subjct}", "the envelope has no attribute 'subjct' (did you mean "
                                    "'subject'?)"),
    ("/contacts/{payload}", "{payload} needs a dotted path after 'payload.'"),
    ("/contacts/{payload.id", "unbalanced braces"),
    ("contacts/{payload.id}", "start the path with '/'"),
])
def test_enrich_config_bad_template_fields_are_named_with_a_fix(
        tmp_path: Path, template: str, expected: str) -> None:
    [problem] = problems(tmp_path, [{"system": "hubspot", "get": template, "into": "c"}])
    assert "routes.0.enrich.0.get" in problem and "config.yaml:" in problem
    assert expected in problem


def test_enrich_config_soap_argument_templates_are_checked(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, [{"system": "nav", "into": "k", "call": {
        "operation": "Read", "arguments": {"No": "{payload.No}", "Filter": ["{evelope.id}"]}}}])
    assert "routes.0.enrich.0.call.arguments" in problem
    assert "{evelope.id} is no placeholder (did you mean 'envelope'?)" in problem


def test_enrich_config_step_must_fit_its_system(tmp_path: Path) -> None:
    found = problems(tmp_path, [
        {"system": "nav", "get": "/x", "into": "a"},
        {"system": "hubspot", "call": {"operation": "Read"}, "into": "b"},
    ])
    assert any("enrich.0.get" in p and "of type 'soap', which takes 'call'" in p for p in found)
    assert any("enrich.1.call" in p and "of type 'rest', which takes 'get'" in p for p in found)


def test_enrich_config_every_problem_at_once(tmp_path: Path) -> None:
    found = problems(tmp_path, [
        {"system": "hubspot", "into": "a"},
        {"system": "hubspot", "get": "/x", "into": "not a path"},
        {"system": "hubspot", "get": "/x", "into": "c", "cache": {"ttl": 0}},
    ])
    assert len(found) == 3, found
    assert any("set either 'get' (a rest system) or 'call'" in p for p in found)
    assert any("enrich.1.into" in p and "dotted path of names" in p for p in found)
    assert any("enrich.2.cache.ttl" in p for p in found)


def test_enrich_config_bad_system_and_unknown_name_reported_together(tmp_path: Path) -> None:
    found = problems(tmp_path, [{"system": "erp", "get": "/x", "into": "c"}],
                     systems={**SYSTEMS, "crm": {"type": "rest", "base_url": "ftp://x"}})
    assert len(found) == 2, found
    assert any("systems.crm.base_url" in p for p in found)
    assert any("enrich.0.system" in p and "no system 'erp'" in p for p in found)


def test_enrich_config_unknown_system_type_is_named(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, [], systems={"erp": {"type": "sopa", "wsdl": "x"}})
    assert "systems.erp.type" in problem
    assert "no system adapter of type 'sopa' (did you mean 'soap'?)" in problem


def test_enrich_example_config_loads_and_its_nav_step_binds_to_the_shipped_wsdl(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAV_PASSWORD", "not-used-offline")
    example = Path(__file__).resolve().parents[3] / "mappings" / "examples" / "enrich"
    loaded = load_config(example / "silobridge.yaml")
    nav = SoapSystem(loaded.config.systems["nav"])  # type: ignore[arg-type]
    nav.start(system_context(example))
    try:
        [step] = loaded.config.routes[1].enrich
        prepared = nav.bind(step, "routes.1.enrich.0").prepare(
            Envelope.new(source="crm/x", type="crm.customer.updated", data={}),
            {"Customer": {"No": "C-1001"}})
        assert prepared.request == {"No": "C-1001"}
    finally:
        nav.close()
