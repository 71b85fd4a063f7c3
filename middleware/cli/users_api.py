"""``silobridge users`` through a daemon's admin API (``adminapi``): every subcommand has an
endpoint, so where a daemon runs, user changes pass its ``users:write`` check and are audited
under the token's user instead of ``cli:<login>``. The daemon also refuses there what the
direct way cannot know to refuse, such as demoting or removing the last admin.

The password ``add`` sends travels in the request body: name an ``https`` API (``console.tls``)
unless the API is on loopback.
"""

from __future__ import annotations

from urllib.parse import quote

from middleware.cli.adminapi import AdminApi
from middleware.cli.common import print_json

__all__ = ["add_via", "list_via", "remove_via", "set_role_via", "token_via"]


def _user(name: str) -> str:
    return f"/api/v1/users/{quote(name, safe='')}"


def list_via(api: AdminApi, as_json: bool) -> int:
    users = api.call("GET", "/api/v1/users")["users"]
    if as_json:
        print_json(users)
        return 0
    for user in users:
        print(f"{user['name']}\t{user['role']}\t{','.join(user['routes']) or '*'}")
    return 0


def add_via(api: AdminApi, name: str, role: str, routes: list[str],
            password: str | None) -> int:
    api.call("POST", "/api/v1/users",
             body={"name": name, "role": role, "routes": routes, "password": password})
    print(f"added {name} ({role}) (through {api.url}, audited)")
    return 0


def remove_via(api: AdminApi, name: str) -> int:
    api.call("DELETE", _user(name))
    print(f"removed {name} (through {api.url}, audited)")
    return 0


def set_role_via(api: AdminApi, name: str, role: str, routes: list[str]) -> int:
    api.call("PUT", _user(name), body={"role": role, "routes": routes})
    print(f"{name} is now {role} (through {api.url}, audited)")
    return 0


def token_via(api: AdminApi, name: str, label: str) -> int:
    print(api.call("POST", f"{_user(name)}/tokens", body={"label": label})["token"])
    return 0
