"""The console in a real browser (Debian's Chromium through Playwright) against the daemon as a
subprocess on the real broker, with a real REST target on loopback.

A viewer signs in and finds no replay button (and the API answers 403 when asked anyway); an
operator replays one dead letter from the keyboard and the target receives it exactly once; an
admin sees it in the audit log. axe-core (npm) checks every page for serious or critical
violations. With ``CONSOLE_SCREENSHOTS=1`` the screenshots are written to docs/console/.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response

from middleware.broker.ingest import publish_envelopes
from middleware.broker.rabbitmq.publisher import Publisher
from middleware.broker.topology import dlq_name
from middleware.config.models import BrokerConfig
from middleware.envelope import Envelope
from tests.e2e.conftest import DaemonProcess, free_port
from tests.integration.console.test_mapping_studio_api import write_studio
from tests.integration.helpers import drain, publish_events, queue_count, wait_until
from tests.integration.rest_helpers import Peer, json_response
from tests.unit.console.oidc_provider import CLIENT_ID, CLIENT_SECRET, Provider

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
AXE_CANDIDATES = [os.environ.get("AXE_CORE_JS", ""),
                  str(Path(__file__).parents[2] / ".ci/node/node_modules/axe-core/axe.min.js"),
                  "/tmp/console_node/node_modules/axe-core/axe.min.js"]
PASSWORD = "a long browser passphrase"
SHOTS = Path(__file__).parents[2] / "docs" / "console"


def _need(found: bool, what: str) -> None:
    if not found:
        if os.environ.get("CI"):
            pytest.fail(f"{what} is required under CI (.ci/run installs it)")
        pytest.skip(f"{what} not installed")


@pytest.fixture
def axe_source() -> str:
    path = next((Path(p) for p in AXE_CANDIDATES if p and Path(p).is_file()), None)
    _need(path is not None, "axe-core (npm install axe-core)")
    assert path is not None
    return path.read_text()


@pytest.fixture
def browser() -> Iterator[Any]:
    _need(Path(CHROMIUM).exists(), "Chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


class Target:
    """The REST target: refuses (400, permanent) while ``refusing``, then accepts."""

    def __init__(self) -> None:
        self.refusing = True
        self.accepted: list[str] = []
        self._lock = threading.Lock()

    async def __call__(self, request: Request, body: bytes) -> Response:
        if self.refusing:
            return json_response({"error": "refused by the test"}, 400)
        with self._lock:
            self.accepted.append(request.headers.get("idempotency-key", "")
                                 or orjson.loads(body).get("n", ""))
        return json_response({"id": "ERP-1"})


def _publish(amqp_url: str, type_: str, data: dict[str, Any]) -> list[str]:
    publisher = Publisher(BrokerConfig(url=amqp_url))
    assert publisher.start(wait=10)
    envelope = Envelope.new(source="crm/test", type=type_, subject="S-1", data=data)
    try:
        publish_envelopes(publisher, [envelope], timeout=30)
    finally:
        publisher.stop()
    return [envelope.id]


def _add_user(config: Path, name: str, role: str) -> None:
    subprocess.run([sys.executable, "-m", "middleware", "users", "add", name, "--role", role,
                    "--password-stdin", "-c", str(config)], input=PASSWORD + "\n", text=True,
                   check=True, capture_output=True, timeout=120)


def _sign_in(page: Any, url: str, name: str) -> None:
    page.goto(f"{url}/console/")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")  # the keyboard submits the form
    page.get_by_text(f"{name} (").wait_for()


def _axe(page: Any, source: str, where: str) -> None:
    page.evaluate(source)  # through the debugger protocol: the page's CSP stays strict
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    bad = [(v["id"], v["impact"], len(v["nodes"])) for v in result["violations"]
           if v["impact"] in ("serious", "critical")]
    assert bad == [], (where, bad)


def _shot(page: Any, name: str, tmp_path: Path) -> None:
    folder = SHOTS if os.environ.get("CONSOLE_SCREENSHOTS") else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_console_in_chromium_viewer_operator_integrator_admin(
    amqp_url: str, prefix: str, tmp_path: Path, browser: Any, axe_source: str,
    daemon_process: Callable[..., DaemonProcess], out_queue: str,
) -> None:
    # Given a daemon with the console on its own port, a route whose target refuses, three
    # users made with the CLI, and two events that ended in the route's DLQ
    target = Target()
    route, mapped = f"{prefix}-crm", f"{prefix}-map"
    mapping = write_studio(tmp_path / "studio")
    with Peer(target) as peer, Provider() as provider:
        port = free_port()
        provider.user = {"sub": "u-7", "preferred_username": "sso-sam", "groups": ["sales"]}
        oidc = {"issuer": provider.issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                "redirect_url": f"http://127.0.0.1:{port}/api/v1/oidc/callback",
                "label": "Test SSO", "roles": [{"value": "sales", "role": "viewer",
                                                "routes": [route]}]}
        daemon = daemon_process(
            [{"name": route, "bind": [f"{prefix}.customer.*"],
              "target": {"type": "rest", "method": "POST", "url": f"{peer.url}/accounts",
                         "timeout": 5}},
             {"name": mapped, "bind": [f"{prefix}.order.*"], "mapping": str(mapping),
              "target": {"type": "amqp", "exchange": out_queue, "routing_key": "erp.order",
                         "queue": out_queue}}],
            console={"enabled": True, "port": port, "secure_cookies": False, "oidc": oidc})
        for name, role in (("vera", "viewer"), ("otto", "operator"), ("ivy", "integrator"),
                           ("ada", "admin")):
            _add_user(daemon.config, name, role)
        daemon.start()
        daemon.wait_ready()
        url = f"http://127.0.0.1:{port}"
        ids = publish_events(amqp_url, prefix, 2)
        assert wait_until(lambda: queue_count(amqp_url, dlq_name(route)) == 2, 30)
        target.refusing = False

        # a viewer sees the dead letters but no replay button; the API refuses anyway
        page = browser.new_page()
        _sign_in(page, url, "vera")
        _axe(page, axe_source, "overview")
        _shot(page, "overview", tmp_path)
        page.goto(f"{url}/console/#/dead-letters/{route}")
        page.get_by_role("button", name=f"Show {ids[0]}").wait_for()
        assert page.get_by_role("button", name="Replay selected").count() == 0
        _axe(page, axe_source, "dead letters (viewer)")
        status = page.evaluate(
            """async ([route, id]) => {
                 const me = await (await fetch('/api/v1/me')).json();
                 const answer = await fetch(`/api/v1/routes/${route}/dead-letters/replay`, {
                   method: 'POST', headers: {'Content-Type': 'application/json',
                   'X-CSRF-Token': me.csrf_token}, body: JSON.stringify({ids: [id]})});
                 return answer.status; }""", [route, ids[0]])
        assert status == 403
        page.goto(f"{url}/console/#/route/{route}")
        page.get_by_role("table", name="Retry tiers").wait_for()
        page.get_by_role("table", name="Recent failures of this route").wait_for()
        _axe(page, axe_source, "route detail")
        _shot(page, "route-detail", tmp_path)
        # the errors page: searched from the keyboard, a failure opens its dead letter
        page.get_by_role("link", name="Search its failures").focus()
        page.keyboard.press("Enter")
        page.get_by_text("2 failure(s); showing 1-2").wait_for()
        page.get_by_label("Text", exact=True).fill(ids[1])
        page.get_by_label("Text", exact=True).press("Enter")
        page.get_by_text("1 failure(s); showing 1-1").wait_for()
        _axe(page, axe_source, "errors")
        _shot(page, "errors", tmp_path)
        page.get_by_role("link", name=ids[1]).focus()
        page.keyboard.press("Enter")
        page.get_by_role("heading", name=f"Dead letter {ids[1]}").wait_for()
        page.close()

        # an operator replays one dead letter, from the keyboard only
        page = browser.new_page()
        _sign_in(page, url, "otto")
        page.goto(f"{url}/console/#/dead-letters/{route}")
        box = page.get_by_label(f"select {ids[0]}")
        box.focus()
        page.keyboard.press("Space")
        page.get_by_role("button", name="Replay selected").focus()
        page.keyboard.press("Enter")
        page.get_by_text("Replayed 1 of 1").wait_for()
        page.get_by_text("1 dead letter(s); showing 1-1").wait_for()  # the list was reloaded
        page.get_by_role("button", name=f"Show {ids[1]}").focus()
        page.keyboard.press("Enter")
        page.get_by_role("heading", name=f"Dead letter {ids[1]}").wait_for()
        _axe(page, axe_source, "dead letters (operator)")
        _shot(page, "dead-letters", tmp_path)
        page.close()
        assert wait_until(lambda: len(target.accepted) >= 1, 20)
        assert wait_until(lambda: queue_count(amqp_url, dlq_name(route)) == 1, 10)
        assert len(target.accepted) == 1  # exactly once; the other dead letter stayed

        # an order event the mapped route refuses (customer_no is no text): a dead letter there
        [refused] = _publish(amqp_url, f"{prefix}.order.updated", {"customer_no": 7, "n": 1})
        assert wait_until(lambda: queue_count(amqp_url, dlq_name(mapped)) == 1, 20)

        # an integrator links three fields in the mapping studio (one by dragging, two from the
        # keyboard), gives one a transform, previews on the dead letter and saves
        page = browser.new_page()
        _sign_in(page, url, "ivy")
        page.goto(f"{url}/console/#/mapping/{mapped}")
        page.get_by_role("heading", name="Source fields").wait_for()
        page.get_by_role("button", name="name", exact=True).drag_to(
            page.locator("li[data-target='full_name']"))
        page.get_by_text("name → full_name").wait_for()
        for source, field in (("n", "number"), ("email", "mail")):
            page.get_by_role("button", name=source, exact=True).focus()
            page.keyboard.press("Enter")
            page.get_by_role("button", name=f"Link to {field}").focus()
            page.keyboard.press("Enter")
        page.get_by_role("button", name="Details of full_name").focus()
        page.keyboard.press("Enter")
        page.get_by_label("Transform", exact=True).select_option("trim")
        page.get_by_role("button", name="Add step").focus()
        page.keyboard.press("Enter")
        page.get_by_role("button", name="Remove step trim").wait_for()
        _axe(page, axe_source, "mapping studio, link editor")
        _shot(page, "mapping-studio", tmp_path)
        page.get_by_role("button", name="Apply to link").focus()
        page.keyboard.press("Enter")
        page.get_by_text("name → full_name (1 transform(s))").wait_for()
        page.get_by_label("Sample from a dead letter of this route").select_option(refused)
        page.get_by_role("button", name="Preview on it").click()
        page.get_by_text(f"Previewed on dead letter {refused}").wait_for()
        assert "customer_no" in page.locator("#st-sample").input_value()
        _axe(page, axe_source, "mapping studio")
        page.get_by_role("button", name="Save links").click()
        page.get_by_text("Saved 3 link(s)").wait_for()
        page.get_by_role("button", name="Run tests").click()
        page.get_by_text("1 of 1 test case(s) passed").wait_for()
        page.get_by_text("(now: name, trim)").wait_for()  # the saved rule, as the page shows it
        page.close()
        # the saved YAML passes the CLI's test, and the daemon maps the next event with it
        assert subprocess.run([sys.executable, "-m", "middleware", "mapping", "test",
                               str(mapping.parent)], capture_output=True,
                              timeout=60).returncode == 0
        assert "# the business key" in mapping.read_text()
        assert "transform: [trim]" in mapping.read_text() or "- trim" in mapping.read_text()
        deadline_ok = wait_until(lambda: "mapping.reloaded" in daemon.log.read_text(), 15)
        assert deadline_ok, daemon.log.read_text()[-2000:]
        publish_events(amqp_url, prefix, 1, entity="order")
        assert wait_until(lambda: queue_count(amqp_url, out_queue) >= 1, 20)
        [(_props, body)] = drain(amqp_url, out_queue)
        mapped_event = orjson.loads(body)
        assert mapped_event.get("data", mapped_event)["number"] == 0

        # an admin finds the replay in the audit log, with who did it
        page = browser.new_page()
        _sign_in(page, url, "ada")
        page.goto(f"{url}/console/#/audit")
        row = page.get_by_role("row").filter(has_text="dlq.replay")
        row.wait_for()
        assert "otto" in row.inner_text() and ids[0] in row.inner_text()
        assert "ivy" in page.get_by_role("row").filter(has_text="mapping.save").inner_text()
        _axe(page, axe_source, "audit")
        _shot(page, "audit", tmp_path)
        for name, heading in (("xref", "Cross-references"), ("users", "Users")):
            page.goto(f"{url}/console/#/{name}")
            page.get_by_role("heading", name=heading, exact=True).wait_for()
            _axe(page, axe_source, name)
            _shot(page, name, tmp_path)
        # the admin adds a user, changes its role, issues it a token and removes it
        page.get_by_label("Name", exact=True).fill("uma")
        page.get_by_label("Role", exact=True).select_option("viewer")
        page.get_by_label("Name", exact=True).press("Enter")
        page.get_by_text("Added uma (viewer)").wait_for()
        page.get_by_label("Role of uma").select_option("operator")
        page.get_by_role("button", name="Save uma").focus()
        page.keyboard.press("Enter")
        page.get_by_text("Saved uma: operator").wait_for()
        page.once("dialog", lambda dialog: dialog.accept("ci"))
        page.get_by_role("button", name="New token for uma").click()
        assert page.locator("#new-token").inner_text().startswith("sbt_")
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Remove uma").click()
        page.get_by_text("Removed uma.").wait_for()
        assert page.get_by_role("row").filter(has_text="uma").count() == 0
        page.close()

        # single sign-on: the provider's "sales" group is a viewer limited to one route
        page = browser.new_page()
        page.goto(f"{url}/console/")
        sso = page.get_by_role("link", name="Sign in with Test SSO")
        sso.wait_for()
        _axe(page, axe_source, "sign-in")
        _shot(page, "sign-in", tmp_path)
        sso.focus()
        page.keyboard.press("Enter")
        page.get_by_text("oidc:sso-sam (viewer)").wait_for()
        page.get_by_role("link", name=route, exact=True).wait_for()
        assert page.get_by_role("link", name=mapped, exact=True).count() == 0
        page.close()
