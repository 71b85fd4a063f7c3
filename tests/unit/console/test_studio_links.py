"""Links chosen in the studio written into the YAML: what a link adds (transforms, a value
map, a cross-reference lookup, a condition) becomes rule keys, comments and order stay, and
the result loads as a mapping the engine runs."""

from __future__ import annotations

from pathlib import Path

from ruamel.yaml import YAML

from middleware.console.studio import TRANSFORMS, Link, Studio, with_links
from middleware.mapping.loader import load_mapping

TEXT = """# keep me
mapping: m
fields:
  code: customer_no   # the business key
  status:
    from: state
    transform: [trim]
    map: {won: CONFIRMED}
"""


def test_studio_link_extras_become_rule_keys_and_comments_stay(tmp_path: Path) -> None:
    text = with_links(TEXT, [
        Link("name", "full_name", transform=["trim", {"prefix": "CRM-"}]),
        Link("status", "stage", map={"lost": "CANCELLED"}, when="source.stage != ''",
             else_="OPEN"),
        Link("account", "customer_no", lookup={"xref": "crm.customer -> erp.account",
                                               "on_missing": "retry"}),
    ])
    assert text.startswith("# keep me") and "# the business key" in text
    rules = YAML(typ="safe").load(text)["fields"]
    assert rules["code"] == "customer_no"
    assert rules["name"] == {"from": "full_name", "transform": ["trim", {"prefix": "CRM-"}]}
    assert rules["status"] == {"from": "stage", "transform": ["trim"],  # kept: not given
                               "map": {"lost": "CANCELLED"}, "when": "source.stage != ''",
                               "else": "OPEN"}
    assert rules["account"]["lookup"] == {"xref": "crm.customer -> erp.account",
                                          "on_missing": "retry"}
    path = tmp_path / "m.yaml"
    path.write_text(with_links(text, [Link("account", "customer_no", lookup={})]))
    mapping = load_mapping(path)  # a valid mapping, and the engine runs it
    assert mapping.apply({"customer_no": "C-1", "full_name": " Ana ", "state": "x",
                          "stage": "lost"}) == {"code": "C-1", "name": "CRM-Ana",
                                                "status": "CANCELLED", "account": "C-1"}


def test_studio_link_empty_extras_remove_keys() -> None:
    text = with_links(TEXT, [Link("status", "state", transform=[], map={}, when="x > 1",
                                  else_="none")])
    text = with_links(text, [Link("status", "state", when="")])
    assert YAML(typ="safe").load(text)["fields"]["status"] == {"from": "state"}


def test_studio_offers_every_registered_transform_with_its_argument_need() -> None:
    by_name = {t["name"]: t for t in TRANSFORMS}
    assert by_name["trim"]["argument"] is False and by_name["prefix"]["argument"] is True
    assert by_name["prefix"]["example"]


def test_studio_refuses_a_link_the_engine_cannot_run_and_keeps_the_file(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(TEXT)
    studio = Studio({"r": path})
    for link, expected in (
            (Link("name", "full_name", lookup={"xref": "not a direction"}),
             "lookup.xref: bad format"),
            (Link("name", "full_name", transform=["uppercase"]), "unknown transform 'uppercase'")):
        before, problems = studio.save("r", with_links(TEXT, [link]))
        assert before == TEXT and path.read_text() == TEXT
        texts = " ".join(str(p["text"]) for p in problems)
        assert expected in texts, texts
