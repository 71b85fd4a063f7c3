"""Dead letters through the admin API on the real broker: bodies and personal data only for
roles allowed to see them, replay delivers exactly once, edit-and-replay and purge are audited."""

from __future__ import annotations

import json
import time

import pytest

from middleware.broker.topology import dlq_name
from tests.integration.console.conftest import PERSONAL, Console
from tests.integration.helpers import queue_count, wait_until

pytestmark = pytest.mark.integration


def _personal_in(text: str) -> list[str]:
    return [value for value in PERSONAL.values() if value in text]


def test_console_bodies_and_personal_data_only_for_roles_that_may_see_them(
    console: Console, capsys: pytest.CaptureFixture[str],
) -> None:
    [message_id] = console.dead_letter()
    route = console.route_a
    base = f"/api/v1/routes/{route}/dead-letters"
    for role in ("viewer", "operator"):
        with console.client(role) as client:
            for path in (base, f"{base}/{message_id}", "/api/v1/errors", "/api/v1/routes"):
                answer = client.get(path)
                assert answer.status_code == 200, (role, path, answer.text)
                assert _personal_in(answer.text) == [], (role, path)
    with console.client("viewer") as client:
        shown = client.get(f"{base}/{message_id}").json()
        assert shown["body_view"] == "none" and "event" not in shown
    with console.client("operator") as client:
        shown = client.get(f"{base}/{message_id}").json()
        assert shown["body_view"] == "masked"
        assert shown["event"]["id"] == message_id  # envelope attributes stay
        assert shown["event"]["data"]["email"] == "***"  # every value masked, keys kept
    with console.client("integrator") as client:
        shown = client.get(f"{base}/{message_id}").json()
        assert shown["event"]["data"]["email"] == PERSONAL["email"]
    # nothing the daemon logged while serving all this carries the personal data
    assert _personal_in(capsys.readouterr().out) == []


def test_console_operator_replay_delivers_exactly_once_and_is_audited(console: Console) -> None:
    ids = console.dead_letter(3)
    route = console.route_a
    with console.client("operator") as client:
        listed = client.get(f"/api/v1/routes/{route}/dead-letters").json()
        assert {item["id"] for item in listed["items"]} >= set(ids)
        console.accept_all()
        answer = client.post(f"/api/v1/routes/{route}/dead-letters/replay",
                             json={"ids": [ids[0]]})
        assert answer.status_code == 200 and answer.json() == {"replayed": 1, "ids": [ids[0]],
                                                            "refused_accepted": []}
    assert wait_until(lambda: ids[0] in console.target.accepted, 15)
    time.sleep(1.0)  # a duplicate would arrive meanwhile
    assert console.target.accepted.count(ids[0]) == 1
    assert queue_count(console.amqp_url, dlq_name(route)) == 2  # the others stay
    with console.client("admin") as admin:
        entries = admin.get("/api/v1/audit?action=dlq.replay").json()["entries"]
        assert entries[0]["actor"] == "operator" and entries[0]["after"]["ids"] == [ids[0]]
        exported = admin.get("/api/v1/audit?format=ndjson")
        assert exported.headers["content-type"].startswith("application/x-ndjson")
        assert json.loads(exported.text.splitlines()[0])["action"] == "dlq.replay"


def test_console_edit_and_replay_delivers_the_edited_event_with_before_and_after(
    console: Console,
) -> None:
    [message_id] = console.dead_letter()
    route = console.route_a
    base = f"/api/v1/routes/{route}/dead-letters/{message_id}"
    with console.client("integrator") as client:
        event = client.get(base).json()["event"]
        changed = {**event, "id": "another-id"}
        assert client.post(f"{base}/edit-replay", json={"event": changed}).status_code == 422
        assert client.post(f"{base}/edit-replay", json={"event": {"id": message_id}}
                           ).status_code == 422  # not an envelope: nothing lost
        event["data"]["name"] = "Ana Corrected"
        console.accept_all()
        answer = client.post(f"{base}/edit-replay", json={"event": event})
        assert answer.status_code == 200, answer.text
    assert wait_until(lambda: message_id in console.target.accepted, 15)
    with console.client("admin") as admin:
        [entry] = admin.get("/api/v1/audit?action=dlq.edit_replay").json()["entries"]
        assert entry["actor"] == "integrator"
        assert entry["before"]["data"]["name"] == "Ana Example"
        assert entry["after"]["data"]["name"] == "Ana Corrected"


def test_console_purge_needs_the_route_name_and_is_audited(console: Console) -> None:
    console.dead_letter(2)
    route = console.route_a
    with console.client("operator") as client:
        wrong = client.post(f"/api/v1/routes/{route}/dead-letters/purge",
                            json={"confirm": "yes"})
        assert wrong.status_code == 400 and route in wrong.json()["error"]
        assert queue_count(console.amqp_url, dlq_name(route)) == 2
        done = client.post(f"/api/v1/routes/{route}/dead-letters/purge", json={"confirm": route})
        assert done.json() == {"purged": 2}
    assert queue_count(console.amqp_url, dlq_name(route)) == 0
    with console.client("admin") as admin:
        [entry] = admin.get("/api/v1/audit?action=dlq.purge").json()["entries"]
        assert entry["before"] == {"dead_letters": 2} and entry["actor"] == "operator"


def test_console_login_is_rate_limited(console: Console) -> None:
    import httpx

    with httpx.Client(base_url=console.url) as client:
        answers = [client.post("/api/v1/login", json={"name": "viewer", "password": "wrong!"})
                   for _ in range(6)]
    assert [a.status_code for a in answers[:5]] == [401] * 5
    assert answers[5].status_code == 429 and int(answers[5].headers["retry-after"]) > 0


def test_console_the_last_admin_cannot_be_removed_or_demoted(console: Console) -> None:
    with console.client("admin") as admin:
        assert admin.delete("/api/v1/users/admin").status_code == 409
        assert admin.put("/api/v1/users/admin", json={"role": "viewer"}).status_code == 409
        assert admin.post("/api/v1/users", json={"name": "second", "role": "admin"}
                          ).status_code == 201
        assert admin.put("/api/v1/users/admin", json={"role": "viewer"}).status_code == 200
    assert console.daemon.console is not None
    users = {u.name: u.role for u in console.daemon.console.store.users()}
    assert users["admin"] == "viewer" and users["second"] == "admin"
