"""Configs and mappings are read with YAML 1.2 rules (issue 15 item 4): NAV's field ``No``,
Norway's ``NO``, ``on``/``off`` and times stay text; a leading-zero number is refused with the
fix, because YAML 1.1 and 1.2 disagree on it and a code would lose its zero either way."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from middleware.config.loader import load_config
from middleware.errors import ConfigError
from middleware.mapping.loader import load_mapping
from middleware.yamlfile import load_yaml


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "file.yaml"
    path.write_text(text, encoding="utf-8")
    return load_yaml(path).data


@pytest.mark.parametrize("word", ["No", "no", "NO", "yes", "Yes", "on", "On", "off", "OFF", "y",
                                  "n"])
def test_yaml_1_1_boolean_words_are_text(tmp_path: Path, word: str) -> None:
    assert _load(tmp_path, f"value: {word}\n") == {"value": word}


@pytest.mark.parametrize(("text", "value"), [
    ("true", True), ("False", False), ("TRUE", True), ("~", None), ("null", None), ("", None),
    ("12", 12), ("-3", -3), ("0", 0), ("0o17", 15), ("0x1F", 31), ("1.5", 1.5), ("1e3", 1000.0),
    (".inf", math.inf), ("-.Inf", -math.inf), ("12:30", "12:30"), ("1:30:00", "1:30:00"),
    ("2024-01-31", "2024-01-31"), ("0b101", "0b101"), ("1_000", "1_000"), ("0xZZ", "0xZZ"),
])
def test_plain_scalars_follow_the_yaml_1_2_core_schema(
    tmp_path: Path, text: str, value: object
) -> None:
    assert _load(tmp_path, f"value: {text}\n") == {"value": value}


def test_quoted_and_explicitly_tagged_scalars_are_unchanged(tmp_path: Path) -> None:
    assert _load(tmp_path, "a: '012'\nb: \"No\"\nc: !!str 12:30\nd: !!int '7'\n") == {
        "a": "012", "b": "No", "c": "12:30", "d": 7}


@pytest.mark.parametrize("text", ["012", "-012", "0440"])
def test_a_number_with_a_leading_zero_is_refused_with_the_fix(tmp_path: Path,
                                                              text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, f"codes:\n  postal: {text}\n")
    message = str(caught.value)
    assert f"file.yaml:2: codes.postal: {text} is a number with a leading zero" in message
    assert f"quote it ('{text}')" in message


def test_nav_no_field_and_norway_in_a_value_map_survive_a_mapping(tmp_path: Path) -> None:
    # Given a mapping written the way NAV and a country list are spelled, unquoted
    path = tmp_path / "nav.yaml"
    path.write_text(
        "mapping: nav-customer\n"
        "fields:\n"
        "  country: {from: country, map: {Norway: NO, Germany: DE, Switzerland: CH}}\n"
        "  opening: {from: shop, map: {main: 12:30}}\n"
        "  active: {from: state, map: {live: on, closed: off}}\n"
        "capture:\n"
        "  - {xref: crm.customer -> erp.account, source: id, response: No}\n",
        encoding="utf-8")
    # When it is loaded and run
    mapping = load_mapping(path)
    out = mapping.apply({"country": "Norway", "shop": "main", "state": "live", "id": "C-1"})
    # Then every value is the text the integrator wrote
    assert out == {"country": "NO", "opening": "12:30", "active": "on"}
    assert mapping.spec.capture[0].response == "No"
    (link,) = mapping.capture({"id": "C-1"}, {"No": "10000"})
    assert "10000" in repr(link)


def test_a_boolean_or_number_where_text_belongs_says_why_and_how_to_quote(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("mapping: m\nfields: {x: {from: a}}\n"
                    "capture:\n  - {xref: a.b -> c.d, source: id, response: true}\n",
                    encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_mapping(path)
    assert "m.yaml:4: capture.0.response: Input should be a valid string; YAML read true as " \
           "a boolean: quote it ('true') to mean the text" in str(caught.value)


def test_config_number_where_text_belongs_says_how_to_quote(tmp_path: Path) -> None:
    path = tmp_path / "silobridge.yaml"
    path.write_text("routes:\n  - name: orders\n    bind: [crm.order.*]\n"
                    "    target: {type: amqp, exchange: 2024, routing_key: y}\n",
                    encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "YAML read 2024 as a number: quote it ('2024') to mean the text" in str(caught.value)
