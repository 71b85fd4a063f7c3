"""Every admin API endpoint for every role, and for no session, an expired session, a forged
CSRF token and the token of a deleted user: the answers match the matrix in ``rbac``, which is
the table docs/console.md shows."""

from __future__ import annotations

import contextlib
import itertools
import time
from typing import Any

import httpx
import pytest

from middleware.console.rbac import ENDPOINTS, Endpoint, Role, allowed
from tests.integration.console.conftest import PASSWORD, Console

pytestmark = pytest.mark.integration
_names = itertools.count()


def _request(console: Console, endpoint: Endpoint, route: str | None = None
             ) -> tuple[str, str, Any]:
    """A harmless request for the endpoint: it passes the guard without changing much."""
    path = endpoint.path.replace("{route}", route or console.route_a) \
        .replace("{id}", "no-such-id").replace("{name}", "nobody")
    bodies: dict[str, Any] = {
        "login": {"name": "viewer", "password": PASSWORD},
        "logout": {}, "replay": {"ids": ["no-such-id"]},
        "edit_replay": {"event": {"specversion": "1.0", "id": "no-such-id", "source": "x",
                                  "type": "a.b.c"}},
        "purge": {"confirm": "not-the-route"},
        "xref_fix": {"ns_a": "crm.customer", "key_a": f"C-{next(_names)}",
                     "ns_b": "erp.account", "key_b": f"A-{next(_names)}"},
        "xref_unlink": {"namespace": "crm.customer", "key": "no-such-key",
                        "other": "erp.account"},
        "user_add": {"name": f"u{next(_names)}-{time.time_ns()}", "role": "viewer"},
        "user_update": {"role": "viewer"}, "token_add": {"label": "x"},
        "mapping_preview": {"input": {}}, "mapping_test": {}, "mapping_save": {"links": []},
    }
    return endpoint.method, path, bodies.get(endpoint.name)


def _call(client: httpx.Client, method: str, path: str, body: Any,
          headers: dict[str, str] | None = None) -> httpx.Response:
    return client.request(method, path, json=body, headers=headers)


def test_console_matrix_every_endpoint_for_every_role(console: Console) -> None:
    for role in Role:
        _walk(console, role)


def _walk(console: Console, role: Role) -> None:
    with console.client(role.value) as client:
        for endpoint in ENDPOINTS:
            answer = _call(client, *_request(console, endpoint))
            client.cookies.clear()  # login signs the viewer in: keep to this role's token
            if endpoint.permission is None or allowed(role, endpoint.permission):
                assert answer.status_code not in (401, 403), (role, endpoint.name, answer.text)
                assert answer.status_code < 500, (role, endpoint.name, answer.text)
            else:
                assert answer.status_code == 403, (role, endpoint.name, answer.status_code)
                assert "may not" in answer.json()["error"]


def test_console_matrix_route_scope_is_enforced(console: Console) -> None:
    with console.client("scoped") as client:
        for endpoint in ENDPOINTS:
            if not endpoint.route_scoped or not allowed("operator", endpoint.permission):
                continue
            inside = _call(client, *_request(console, endpoint, console.route_a))
            outside = _call(client, *_request(console, endpoint, console.route_b))
            assert inside.status_code not in (401, 403), (endpoint.name, inside.text)
            assert outside.status_code == 403, (endpoint.name, outside.status_code)
        listed = [row["route"] for row in client.get("/api/v1/routes").json()["routes"]]
        assert listed == [console.route_a]


def test_console_matrix_without_session_everything_but_public_is_401(console: Console) -> None:
    with console.client() as client:
        for endpoint in ENDPOINTS:
            answer = _call(client, *_request(console, endpoint))
            client.cookies.clear()  # the login call signs in: stay anonymous
            if endpoint.permission is None:
                assert answer.status_code not in (401, 403), endpoint.name
            else:
                assert answer.status_code == 401, (endpoint.name, answer.status_code)
            garbage = _call(client, *_request(console, endpoint),
                            headers={"Authorization": "Bearer sbt_forged",
                                     "Cookie": "silobridge_session=forged"})
            client.cookies.clear()
            if endpoint.permission is not None:
                assert garbage.status_code == 401, endpoint.name


def test_console_matrix_forged_or_missing_csrf_is_403_on_every_mutation(
    console: Console,
) -> None:
    client, csrf = console.session("admin")
    with contextlib.closing(client):
        for endpoint in (e for e in ENDPOINTS if e.mutating and e.permission is not None):
            for header in ({}, {"X-CSRF-Token": "forged"}):
                answer = _call(client, *_request(console, endpoint), headers=header)
                assert answer.status_code == 403, (endpoint.name, header)
                assert "CSRF" in answer.json()["error"]
        # with the right token the session works, and reads need none
        right = {"X-CSRF-Token": csrf}
        assert client.post("/api/v1/users", json={"name": "with-csrf", "role": "viewer"},
                           headers=right).status_code == 201
        assert client.get("/api/v1/me").json()["name"] == "admin"
        assert client.post("/api/v1/logout", json={}, headers=right).status_code == 200
        assert client.get("/api/v1/me").status_code == 401  # the session ended


def test_console_matrix_expired_session_and_deleted_users_token_are_401(
    console: Console,
) -> None:
    assert console.daemon.console is not None
    context = console.daemon.console.context
    client, _csrf = console.session("viewer")
    with contextlib.closing(client):
        context.auth.config = context.auth.config.model_copy(update={"session_ttl": 0.2})
        try:
            short, _ = console.session("operator")
        finally:
            context.auth.config = context.auth.config.model_copy(update={"session_ttl": 3600})
        time.sleep(0.4)
        with contextlib.closing(short):
            assert short.get("/api/v1/me").status_code == 401
        assert client.get("/api/v1/me").status_code == 200
    with console.client("admin") as admin:
        assert admin.delete("/api/v1/users/integrator").status_code == 200
    with console.client("integrator") as gone:
        for endpoint in (e for e in ENDPOINTS if e.permission is not None):
            assert _call(gone, *_request(console, endpoint)).status_code == 401, endpoint.name
    with httpx.Client(base_url=console.url) as anonymous:
        assert anonymous.post("/api/v1/login", json={"name": "integrator",
                                                     "password": PASSWORD}).status_code == 401
