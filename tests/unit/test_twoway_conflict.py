"""Conflict rules between a pair of routes, on a SQLite sync store: which change is dropped,
which one re-asserts, and what rule 'fields' leaves out of a write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from middleware.config.models import Config, StoreConfig
from middleware.envelope import Envelope
from middleware.stores import open_stores
from middleware.twoway.conflict import Judgement, Rules

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def _rules(tmp_path: Path, conflict: dict[str, Any]) -> tuple[Rules, Rules]:
    config = Config.model_validate({"routes": [
        {"name": name, "bind": [f"{system}.customer.*"], "target": {"type": "scripted"},
         "sync": {"echo": {"pair": pair, "fields": ["name"]}, "conflict": conflict}}
        for name, pair, system in (("to-erp", "to-crm", "crm"), ("to-crm", "to-erp", "erp"))]})
    stores = open_stores(StoreConfig(path=str(tmp_path / "s.db")))
    assert stores.sync is not None
    sync = stores.sync

    def call(_store: str, _op: str, fn: Any) -> Any:
        return fn()

    return Rules(config.routes[0], sync, call), Rules(config.routes[1], sync, call)


def _change(system: str, second: float) -> Envelope:
    return Envelope.new(source=system, type=f"{system}.customer.updated", subject="C-1",
                        time=T0 + timedelta(seconds=second), data={})


def test_latest_wins_drops_the_older_change_and_lets_the_newer_repair(tmp_path: Path) -> None:
    to_erp, to_crm = _rules(tmp_path, {"rule": "latest-wins", "window": 60})
    # the older CRM change was judged first: nothing to compare with yet
    assert to_erp.judge(_change("crm", 1), "C-1") == Judgement(drop=False, reassert=False)
    # the newer ERP change wins and must repair the ERP (the CRM change was written there)
    assert to_crm.judge(_change("erp", 2), "C-1") == Judgement(drop=False, reassert=True)
    # a late copy of an even older CRM change loses
    assert to_erp.judge(_change("crm", 0.5), "C-1") == Judgement(drop=True, reassert=False)


def test_system_wins_drops_the_losing_system_within_the_window_only(tmp_path: Path) -> None:
    to_erp, to_crm = _rules(tmp_path, {"rule": "system-wins", "wins": "crm", "window": 60})
    assert to_erp.judge(_change("crm", 10), "C-1").drop is False
    assert to_crm.judge(_change("erp", 20), "C-1") == Judgement(drop=True, reassert=False)
    assert to_crm.judge(_change("erp", 100), "C-1").drop is False  # 90 s later: no conflict
    assert to_erp.judge(_change("crm", 101), "C-1") == Judgement(drop=False, reassert=True)


def test_fields_rule_never_writes_the_targets_own_fields(tmp_path: Path) -> None:
    to_erp, _ = _rules(tmp_path, {"rule": "fields", "owned_by_target": ["price", "terms.days"]})
    payload = {"name": "A", "price": 9, "terms": {"days": 30, "kind": "net"}}
    assert to_erp.strip(payload) == {"name": "A", "terms": {"kind": "net"}}
    assert payload["terms"] == {"days": 30, "kind": "net"}  # the input is not changed
    assert to_erp.judge(_change("crm", 1), "C-1").drop is False


@pytest.mark.parametrize(("conflict", "fragment"), [
    ({"rule": "system-wins"}, "needs 'wins"),
    ({"rule": "fields"}, "needs 'owned_by_target'"),
])
def test_conflict_rules_name_their_missing_option(conflict: dict[str, Any],
                                                  fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        Config.model_validate({"routes": [
            {"name": "a", "bind": ["crm.x.*"], "target": {"type": "scripted"},
             "sync": {"echo": {"pair": "a", "fields": ["n"]}, "conflict": conflict}}]})
