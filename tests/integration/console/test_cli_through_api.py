"""``silobridge dlq``, ``xref`` and ``users`` through a running daemon's admin API: the
token's role decides (a refused change changes nothing), a change is audited under the token's
user, and an API that cannot be reached falls back to the broker or store with a note."""

from __future__ import annotations

import io
import sys
from typing import Any

import httpx
import orjson
import pytest

from middleware.broker.topology import dlq_name
from middleware.cli import main
from middleware.cli.adminapi import TOKEN_ENV
from middleware.stores import open_stores
from middleware.stores.base import XrefLink
from tests.integration.console.conftest import PASSWORD, Console
from tests.integration.helpers import queue_count, wait_until
from tests.ports import free_port

pytestmark = pytest.mark.integration


def test_cli_dlq_goes_through_the_admin_api_with_its_roles_and_audit(
    console: Console, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    ids = console.dead_letter(2)
    route = console.route_a
    monkeypatch.setenv("AMQP_URL", console.amqp_url)

    monkeypatch.setenv(TOKEN_ENV, console.tokens["viewer"])
    assert main(["dlq", "list", route, "--api", console.url]) == 0
    listed = capsys.readouterr().out
    assert all(i in listed for i in ids) and f"through {console.url}" in listed
    assert main(["dlq", "replay", route, "--id", ids[0], "--api", console.url]) == 1
    refused = capsys.readouterr().err
    assert "refused (403)" in refused and "may not" in refused
    assert queue_count(console.amqp_url, dlq_name(route)) == 2  # nothing moved
    assert main(["dlq", "show", ids[0], "--api", console.url]) == 0
    assert "does not show payload bodies" in capsys.readouterr().out

    monkeypatch.setenv(TOKEN_ENV, console.tokens["operator"])
    console.accept_all()
    assert main(["dlq", "replay", route, "--id", ids[0], "--api", console.url]) == 0
    assert "replayed 1 message(s)" in capsys.readouterr().out
    assert wait_until(lambda: ids[0] in console.target.accepted, 15)
    with console.client("admin") as admin:
        [entry] = admin.get("/api/v1/audit?action=dlq.replay").json()["entries"]
    assert entry["actor"] == "operator" and entry["after"]["ids"] == [ids[0]]

    # nothing listens there: the CLI says so and reads the broker itself
    away = f"http://127.0.0.1:{free_port()}"
    assert main(["dlq", "list", route, "--api", away]) == 0
    out, err = capsys.readouterr()
    assert f"the admin API at {away} cannot be reached" in err and "using the broker" in err
    assert ids[1] in out and f"in {dlq_name(route)}" in out


def _links(console: Console, key: str) -> list[dict[str, str]]:
    with console.client("admin") as admin:
        found: list[dict[str, str]] = admin.get("/api/v1/xref", params={"key": key}).json()["links"]
    return found


def _audited(console: Console, action: str) -> list[dict[str, Any]]:
    with console.client("admin") as admin:
        entries: list[dict[str, Any]] = admin.get(
            "/api/v1/audit", params={"action": action}).json()["entries"]
    return entries


def test_cli_xref_goes_through_the_admin_api_with_its_roles_and_audit(
    console: Console, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    config = str(console.daemon.loaded.path)
    api = ["-c", config, "--api", console.url]
    key = f"C-{console.prefix}"

    monkeypatch.setenv(TOKEN_ENV, console.tokens["operator"])  # may read links, not change them
    assert main(["xref", "link", f"crm.customer:{key}", "erp.account:A-1", *api]) == 1
    refused = capsys.readouterr().err
    assert "refused (403)" in refused and "xref:write" in refused
    assert _links(console, key) == [] and _audited(console, "xref.fix") == []

    monkeypatch.setenv(TOKEN_ENV, console.tokens["integrator"])
    assert main(["xref", "link", f"crm.customer:{key}", "erp.account:A-1", *api]) == 0
    assert f"through {console.url}, audited" in capsys.readouterr().out
    # a key that only starts like the first one: the API matches prefixes, the CLI must not
    assert main(["xref", "link", f"crm.customer:{key}0", "erp.account:A-10", *api]) == 0
    [entry, _] = sorted(_audited(console, "xref.fix"), key=lambda e: str(e["target"]))
    assert entry["actor"] == "integrator" and entry["after"]["key_b"] == "A-1"

    # a conflicting link is refused as the store refuses it, not replaced as PUT would
    assert main(["xref", "link", f"crm.customer:{key}", "erp.account:A-2", *api]) == 1
    err = capsys.readouterr().err
    assert f"crm.customer:{key} is already linked to erp.account:A-1" in err
    assert f"silobridge xref unlink crm.customer:{key} erp.account" in err
    assert [link["key_b"] for link in _links(console, key) if link["key_a"] == key] == ["A-1"]
    assert len(_audited(console, "xref.fix")) == 2

    monkeypatch.setenv(TOKEN_ENV, console.tokens["operator"])
    assert main(["xref", "show", f"crm.customer:{key}", "--json", *api]) == 0
    assert orjson.loads(capsys.readouterr().out) == [
        {"ns_a": "crm.customer", "key_a": key, "ns_b": "erp.account", "key_b": "A-1"}]
    assert main(["xref", "list", "--key", "A-10", *api]) == 0
    out = capsys.readouterr().out
    assert f"crm.customer:{key}0 <-> erp.account:A-10" in out and "1 link(s) (through" in out

    # more than one page of the API (500): every link, each once
    left, right = f"{console.prefix}.left", f"{console.prefix}.right"
    stores = open_stores(console.daemon.config.store)
    try:
        stores.xref.import_links([XrefLink(left, f"L{n:04}", right, f"R{n:04}")
                                  for n in range(501)])
    finally:
        stores.close()
    assert main(["xref", "list", "--namespace", right, "--json", *api]) == 0
    listed = orjson.loads(capsys.readouterr().out)
    assert [link["key_a"] for link in listed] == [f"L{n:04}" for n in range(501)]

    away = f"http://127.0.0.1:{free_port()}"
    assert main(["xref", "show", f"crm.customer:{key}", "-c", config, "--api", away]) == 0
    out, err = capsys.readouterr()
    assert f"the admin API at {away} cannot be reached" in err and "using the store" in err
    assert out == f"crm.customer:{key} <-> erp.account:A-1\n"

    assert main(["xref", "unlink", f"crm.customer:{key}", "erp.account", *api]) == 1
    assert "refused (403)" in capsys.readouterr().err
    assert len(_links(console, key)) == 2 and _audited(console, "xref.unlink") == []
    monkeypatch.setenv(TOKEN_ENV, console.tokens["integrator"])
    assert main(["xref", "unlink", "erp.account:A-1", "crm.customer", *api]) == 0
    assert f"unlinked erp.account:A-1 <-> crm.customer:{key} (through" in capsys.readouterr().out
    [gone] = _audited(console, "xref.unlink")
    assert (gone["actor"], gone["before"]["key_a"], gone["after"]) == ("integrator", key, None)
    assert [link["key_a"] for link in _links(console, key)] == [f"{key}0"]
    assert main(["xref", "unlink", "erp.account:A-1", "crm.customer", *api]) == 1
    assert "erp.account:A-1 has no link to crm.customer" in capsys.readouterr().err


def test_cli_users_go_through_the_admin_api_with_its_roles_and_audit(
    console: Console, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    config = str(console.daemon.loaded.path)
    api = ["-c", config, "--api", console.url]

    monkeypatch.setenv(TOKEN_ENV, console.tokens["integrator"])  # not an admin
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{PASSWORD}\n"))
    assert main(["users", "add", "eve", "--role", "viewer", "--password-stdin", *api]) == 1
    assert "refused (403)" in capsys.readouterr().err
    with console.client("admin") as admin:
        assert "eve" not in [u["name"] for u in admin.get("/api/v1/users").json()["users"]]

    monkeypatch.setenv(TOKEN_ENV, console.tokens["admin"])
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{PASSWORD}\n"))
    assert main(["users", "add", "eve", "--role", "viewer", "--password-stdin", *api]) == 0
    assert main(["users", "set-role", "eve", "operator", "--routes", console.route_a, *api]) == 0
    capsys.readouterr()
    assert main(["users", "token", "eve", "--label", "ci", *api]) == 0
    token = capsys.readouterr().out.strip()
    with httpx.Client(base_url=console.url, timeout=30,
                      headers={"Authorization": f"Bearer {token}"}) as eve:
        me = eve.get("/api/v1/me").json()
    assert (me["name"], me["role"], me["routes"]) == ("eve", "operator", [console.route_a])
    [added], [updated], [issued] = (_audited(console, action)
                                    for action in ("user.add", "user.update", "token.add"))
    assert {added["actor"], updated["actor"], issued["actor"]} == {"admin"}
    assert updated["before"]["role"] == "viewer" and updated["after"]["role"] == "operator"
    # the daemon keeps its last admin, which the store alone would not know to do
    assert main(["users", "remove", "admin", *api]) == 1
    assert "only admin" in capsys.readouterr().err
    assert main(["users", "remove", "eve", *api]) == 0
    assert "removed eve" in capsys.readouterr().out
    assert _audited(console, "user.remove")[0]["actor"] == "admin"

    away = f"http://127.0.0.1:{free_port()}"
    assert main(["users", "list", "-c", config, "--api", away]) == 0
    out, err = capsys.readouterr()
    assert f"the admin API at {away} cannot be reached" in err and "using the store" in err
    assert "admin\tadmin\t*\n" in out and "\neve\t" not in f"\n{out}"
