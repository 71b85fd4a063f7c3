"""The shipped dashboard and alert rules against a real Prometheus scraping a real daemon.

A daemon subprocess takes signed webhooks under traffic that delivers, retries and
dead-letters (a target that answers 500, a mapping whose cross-reference is missing); Debian's
``prometheus`` scrapes it every second on loopback. Then every query of every dashboard panel
(``$route`` and ``$__rate_interval`` substituted) must return data through the HTTP API, every
alert expression must evaluate and every series it reads must exist, and the dead-letter alert,
with its ``for:`` shortened in a copy derived from deploy/prometheus/alerts.yml, must fire for
the route that has dead letters while the alerts about consumers and the broker stay silent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest
import yaml
from starlette.requests import Request
from starlette.responses import Response

from tests.e2e.conftest import DaemonProcess, free_port
from tests.integration.helpers import wait_until
from tests.integration.rest_helpers import Peer, hmac_hex

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "silobridge.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
XREF_MAPPING = ROOT / "mappings" / "crm-erp" / "order-to-reservation.yaml"
ORDER = json.loads((ROOT / "mappings" / "crm-erp" / "samples" / "crm-order-won.json").read_text())
SECRET = "prometheus-e2e-secret"
EVENTS = 6
RATE_INTERVAL = "1m"


def require_tool(name: str) -> str:
    """The tool's path; skipped locally without it, a failure under CI."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (CI is set: the observability tests must run)")
        pytest.skip(f"{name} is not installed")
    return path


async def _target(request: Request, _body: bytes) -> Response:
    return Response(b"{}", 500 if request.url.path.endswith("/fail") else 200,
                    media_type="application/json")


@pytest.fixture
def traffic(
    prefix: str, daemon_process: Callable[..., DaemonProcess], monkeypatch: pytest.MonkeyPatch,
) -> Iterator[DaemonProcess]:
    """A daemon that delivered, retried and dead-lettered; routes '<prefix>-ok|fail|xref'."""
    monkeypatch.setenv("PROM_E2E_SECRET", SECRET)
    with Peer(_target) as peer:
        def route(name: str, path: str, **extra: Any) -> dict[str, Any]:
            return {"name": f"{prefix}-{name}", "bind": [f"{prefix}.order.won"], **extra,
                    "target": {"type": "rest", "method": "POST", "url": peer.url + path,
                               "timeout": 5}}

        daemon = daemon_process(
            [route("ok", "/ok"), route("fail", "/fail"),
             route("xref", "/ok", mapping=str(XREF_MAPPING))],
            inbound=[{"type": "rest", "name": f"{prefix}-orders", "path": "/webhooks/orders",
                      "system": prefix,
                      "auth": {"scheme": "hmac", "header": "X-Signature",
                               "secret_env": "PROM_E2E_SECRET"},
                      "derive": {"entity": {"value": "order"}, "action": {"path": "stage"},
                                 "subject": {"path": "opportunity_id"}}}],
        )
        ingress = yaml.safe_load(daemon.config.read_text())["ingress"]["port"]
        daemon.start()
        daemon.wait_ready()
        hook = f"http://127.0.0.1:{ingress}/webhooks/orders"  # ready: the ingress listens
        for n in range(EVENTS):
            body = json.dumps({**ORDER, "opportunity_id": f"OPP-{prefix}-{n}"}).encode()
            answer = httpx.post(hook, content=body, timeout=10, headers={
                "Content-Type": "application/json", "X-Signature": hmac_hex(SECRET, body)})
            assert answer.status_code == 202, answer.text
        forged = httpx.post(hook, content=b"{}", timeout=10, headers={
            "Content-Type": "application/json", "X-Signature": "0" * 64})
        assert forged.status_code == 401
        yield daemon


def _test_rules(directory: Path) -> Path:
    """alerts.yml with every ``for:`` cut to one second; nothing else changes."""
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    path = directory / "alerts.yml"
    path.write_text(yaml.safe_dump(rules))
    return path


@pytest.fixture
def prometheus(traffic: DaemonProcess, tmp_path: Path) -> Iterator[str]:
    """Prometheus on loopback scraping the daemon every second; yields its base URL."""
    binary = require_tool("prometheus")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(_test_rules(tmp_path))],
        "scrape_configs": [{"job_name": "silobridge-worker", "static_configs": [
            {"targets": [f"127.0.0.1:{traffic.ops_port}"]}]}],
    }))
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        ready = wait_until(lambda: _ok(f"{base}/-/ready"), 30)
        assert ready, (tmp_path / "prometheus.log").read_text()
        yield base
    finally:
        process.terminate()
        process.wait(20)
        log.close()


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", (expr, answer)
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def _has_data(base: str, expr: str, timeout: float = 30) -> bool:
    return wait_until(lambda: bool(_query(base, expr)), timeout)


def _panel_queries(prefix: str) -> list[tuple[str, str]]:
    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"].replace("$route", f"{prefix}-.+")
             .replace("$__rate_interval", RATE_INTERVAL))
            for panel in panels(dashboard["panels"]) for target in panel.get("targets", [])]


def _selectors(expr: str) -> list[str]:
    found: list[str] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(str(node))

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def test_observability_prometheus_every_panel_and_alert_query_returns_data(
    prometheus: str, prefix: str,
) -> None:
    # Given the daemon's dead letters are on the broker and scraped
    dlq = f'silobridge_queue_depth{{kind="dlq", route="{prefix}-fail"}} >= {EVENTS}'
    assert _has_data(prometheus, dlq, 60), "the failing route never showed its dead letters"
    assert _has_data(prometheus, f'silobridge_queue_depth{{kind="dlq", route="{prefix}-xref"}}'
                                 f' >= {EVENTS}', 30)
    assert _has_data(prometheus, f'silobridge_dlq_oldest_age_seconds{{route="{prefix}-fail"}}'
                                 " > 0", 30)

    # Then every panel query returns data
    empty = [(title, expr) for title, expr in _panel_queries(prefix)
             if not _has_data(prometheus, expr, 10)]
    assert empty == []

    # And every alert expression evaluates, and every series it reads exists
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"]
             for rule in group["rules"]]
    for rule in rules:
        _query(prometheus, rule["expr"])
        for selector in _selectors(rule["expr"]):
            assert _query(prometheus, selector), (rule["alert"], selector)

    # And the dead-letter alert fires for the route with dead letters, and only there
    def firing() -> dict[str, set[str]]:
        alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        found: dict[str, set[str]] = {}
        for alert in alerts:
            if alert["state"] == "firing":
                found.setdefault(alert["labels"]["alertname"], set()).add(
                    alert["labels"].get("route", ""))
        return found

    assert wait_until(lambda: f"{prefix}-fail" in firing().get(
        "SilobridgeDeadLettersWaiting", set()), 30), firing()
    now = firing()
    assert now["SilobridgeDeadLettersWaiting"] == {f"{prefix}-fail", f"{prefix}-xref"}
    quiet = {"SilobridgeNoConsumers", "SilobridgeWorkersDown", "SilobridgeBrokerDisconnected"}
    assert quiet.isdisjoint(now), now


def test_observability_promtool_check_metrics_passes_on_a_live_scrape(
    traffic: DaemonProcess, prefix: str,
) -> None:
    promtool = require_tool("promtool")
    # Given dead letters and deliveries, so every labelled series has appeared
    def complete() -> bool:
        scrape = traffic.metrics()
        return all(series in scrape for series in (
            f'route="{prefix}-fail"', 'outcome="dead_lettered"',
            "silobridge_sync_lag_seconds_bucket"))

    assert wait_until(complete, 30)
    scrape = traffic.metrics()
    checked = subprocess.run([promtool, "check", "metrics"], input=scrape.encode(),
                             capture_output=True, timeout=30)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
