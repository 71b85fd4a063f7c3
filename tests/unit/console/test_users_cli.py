"""``silobridge users ...`` against an SQLite store in a temp dir."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from middleware.cli import main
from middleware.config.models import ConsoleConfig, StoreConfig
from middleware.console.auth import Authenticator
from middleware.console.store import open_console_store


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"store: {{kind: sqlite, path: {tmp_path / 'store.db'}}}\n")
    return path


def _run(monkeypatch: pytest.MonkeyPatch, stdin: str, *argv: str) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(list(argv))


def test_users_cli_add_list_set_role_token_remove(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    c = ("-c", str(config))
    assert _run(monkeypatch, "a long passphrase\n", "users", "add", "ana", "--role", "operator",
                "--routes", "crm-a,crm-b", "--password-stdin", *c) == 0
    assert _run(monkeypatch, "", "users", "add", "ana", "--role", "admin", "--no-password",
                *c) == 1  # exists
    capsys.readouterr()
    assert main(["users", "list", "--json", *c]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(u["name"], u["role"], u["routes"]) for u in listed] == [
        ("ana", "operator", ["crm-a", "crm-b"])]
    assert "password" not in listed[0]
    assert main(["users", "set-role", "ana", "integrator", *c]) == 0
    assert main(["users", "token", "ana", "--label", "ci", *c]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    store = open_console_store(StoreConfig(path=str(tmp_path / "store.db")))
    try:
        auth = Authenticator(store, ConsoleConfig())
        principal = auth.resolve(None, f"Bearer {token}")
        assert principal is not None and principal.role == "integrator"
        assert principal.user.routes == ()
        assert auth.login("ana", "a long passphrase", "127.0.0.1") is not None
        actions = [r.action for r in store.audit_records(10, 0)]
        assert actions == ["token.add", "user.update", "user.add"]
        assert main(["users", "remove", "ana", *c]) == 0
        assert auth.resolve(None, f"Bearer {token}") is None
    finally:
        store.close()
    assert main(["users", "remove", "ana", *c]) == 1


def test_users_cli_refuses_a_short_password(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(monkeypatch, "short\n", "users", "add", "bo", "--role", "viewer",
                "--password-stdin", "-c", str(config)) == 2
    assert "at least 12" in capsys.readouterr().err
    assert main(["users", "list", "-c", str(config)]) == 0
    assert "bo" not in capsys.readouterr().out
