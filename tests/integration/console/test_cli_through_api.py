"""``silobridge dlq`` through a running daemon's admin API: the token's role decides (a
viewer's replay is refused and nothing moves), a replay is audited under the token's user, and
an API that cannot be reached falls back to the broker with a note."""

from __future__ import annotations

import pytest

from middleware.broker.topology import dlq_name
from middleware.cli import main
from middleware.cli.adminapi import TOKEN_ENV
from tests.integration.console.conftest import Console
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
