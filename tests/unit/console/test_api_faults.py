"""The API's answers when the store or the broker fails: 503 with Retry-After and a message,
never a 500 or a hung request (no network: a store that fails on purpose)."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.testclient import TestClient

from middleware.config.models import Config
from middleware.console.api import Context, api_routes
from middleware.console.auth import Authenticator
from middleware.console.handlers import HANDLERS
from middleware.console.livestate import LiveState
from middleware.console.studio import Studio
from middleware.errors import ProcessingError


class DownStore:
    """Every call fails as a PostgreSQL store does while its server is away."""

    def __getattr__(self, name: str) -> Any:
        def fail(*_args: Any, **_kwargs: Any) -> Any:
            raise ProcessingError("console store unreachable (OperationalError); will retry",
                                  retryable=True)
        return fail


def _client() -> TestClient:
    config = Config()
    store: Any = DownStore()
    context = Context(config, store, Authenticator(store, config.console), LiveState(config),
                      False, Studio({}))
    return TestClient(Starlette(routes=api_routes(context, HANDLERS)))


def test_api_store_down_answers_503_with_retry_after() -> None:
    with _client() as client:
        for method, path in (("GET", "/api/v1/me"), ("GET", "/api/v1/users")):
            answer = client.request(method, path, headers={"Authorization": "Bearer sbt_x"})
            assert answer.status_code == 503, (path, answer.text)
            assert answer.headers["retry-after"] == "5"
            assert "store is unavailable" in answer.json()["error"]
        login = client.post("/api/v1/login", json={"name": "ana", "password": "whatever"})
        assert login.status_code == 503


def test_api_bad_bodies_name_the_field_and_never_echo_the_input() -> None:
    with _client() as client:
        assert client.post("/api/v1/login", content=b"{not json").status_code == 400
        answer = client.post("/api/v1/login", json={"name": "", "password": "s3cret-value"})
        assert answer.status_code == 422
        assert answer.json()["details"][0]["field"] == "name"
        assert "s3cret-value" not in answer.text
        big = client.post("/api/v1/login", content=b"x" * 1_100_000)
        assert big.status_code == 413
