"""Without ``console.port`` the console shares the ops port: the API, the pages (with their
security headers) and /readyz, /metrics all answer there."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon

pytestmark = pytest.mark.integration


def test_console_shares_the_ops_port_when_it_has_none(
    prefix: str, make_config: Callable[..., LoadedConfig],
    run_daemon: Callable[[LoadedConfig], Daemon],
) -> None:
    loaded = make_config([{"name": f"{prefix}-r", "bind": [f"{prefix}.customer.*"],
                           "target": {"type": "scripted", "name": prefix}}],
                         console={"enabled": True})
    daemon = run_daemon(loaded)
    assert daemon.console is not None and daemon.console.port is None
    with httpx.Client(base_url=f"http://127.0.0.1:{daemon.ops.port}") as client:
        assert client.get("/readyz").status_code == 200
        assert "silobridge_" in client.get("/metrics").text
        assert client.get("/api/v1/me").status_code == 401
        page = client.get("/console/")
        assert page.status_code == 200 and "app.js" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        assert client.get("/api/v1/openapi.json").json()["openapi"].startswith("3.1")


def test_console_off_by_default_serves_nothing_new(
    prefix: str, make_config: Callable[..., LoadedConfig],
    run_daemon: Callable[[LoadedConfig], Daemon],
) -> None:
    loaded = make_config([{"name": f"{prefix}-r", "bind": [f"{prefix}.customer.*"],
                           "target": {"type": "scripted", "name": prefix}}])
    daemon = run_daemon(loaded)
    assert daemon.console is None
    with httpx.Client(base_url=f"http://127.0.0.1:{daemon.ops.port}") as client:
        assert client.get("/api/v1/me").status_code == 404
        assert client.get("/readyz").status_code == 200
