"""The route detail while the broker cannot be reached: the page still answers, with the
broker's parts unknown (None) rather than a 503, since that is when an operator looks."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.testclient import TestClient

from middleware.config.models import Config, StoreConfig
from middleware.console.api import Context, api_routes
from middleware.console.auth import Authenticator
from middleware.console.handlers import HANDLERS
from middleware.console.livestate import LiveState
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
