"""The route detail while the broker cannot be reached: the page still answers, with the
broker's parts unknown (None) rather than a 503, since that is when an operator looks."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.testclient import TestClient

from middleware.config.models import Config, RouteConfig, StoreConfig
from middleware.console.api import Context, api_routes
from middleware.console.auth import Authenticator
from middleware.console.handlers import HANDLERS
from middleware.console.livestate import LiveState
from middleware.console.routedetail import mapping_in_use
from middleware.console.store import open_console_store
from middleware.console.studio import Studio
from tests.ports import free_port


def test_route_detail_without_a_broker_answers_with_unknowns(tmp_path: Path) -> None:
    config = Config.model_validate({
        "broker": {"url": f"amqp://guest:guest@127.0.0.1:{free_port()}/"},
        "retry": {"attempts": 2},
        "routes": [{"name": "crm", "bind": ["crm.#"],
                    "target": {"type": "amqp", "exchange": "out", "routing_key": "x"}}]})
    store = open_console_store(StoreConfig(kind="sqlite", path=str(tmp_path / "s.db")))
    try:
        store.add_user("vi", None, "viewer")
        auth = Authenticator(store, config.console)
        token = auth.issue_token("vi", "test")
        context = Context(config, store, auth, LiveState(config), False, Studio({}))
        with TestClient(Starlette(routes=api_routes(context, HANDLERS))) as client:
            answer = client.get("/api/v1/routes/crm", headers={"Authorization": f"Bearer {token}"})
    finally:
        store.close()
    assert answer.status_code == 200, answer.text
    detail = answer.json()
    assert detail["recent_failures"] is None and detail["mapping"] is None
    assert [(t["tier"], t["depth"]) for t in detail["retry"]["tiers"]] == [(1, None), (2, None)]


def test_route_detail_mapping_in_use_shows_rules_only_to_roles_that_read_mappings(
        tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("mapping: m\nfields:\n  code: customer_no\n"
                    "  name: {from: n, transform: [trim]}\n")
    route = RouteConfig.model_validate({"name": "crm", "bind": ["crm.#"], "mapping": "m.yaml",
                                        "target": {"type": "amqp", "exchange": "o",
                                                   "routing_key": "x"}})
    studio = Studio({"crm": path})
    assert mapping_in_use(studio, route, rules=False) == {"file": "m.yaml"}
    shown = mapping_in_use(studio, route, rules=True)
    assert shown is not None and shown["problems"] == []
    assert shown["rules"] == {"code": {"from": "customer_no"},
                              "name": {"from": "n", "transform": ["trim"]}}
