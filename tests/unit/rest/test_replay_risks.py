"""Which endpoints leave replays open (issue 11 finding 3): the warning and the dedupe defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.rest.inbound_config import RestEndpointConfig
from adapters.rest.replay import default_dedupe, replay_risks

REPO = Path(__file__).resolve().parents[3]
SIGNED_ID = {"scheme": "hmac", "header": "X-Signature", "secret_env": "S",
             "id_header": "X-Request-Id", "timestamp_header": "X-Timestamp",
             "signed_payload": "{id}.{timestamp}.{body}"}
BODY_ONLY = {"scheme": "hmac", "header": "X-Signature", "secret_env": "S"}


def _endpoint(**extra: Any) -> dict[str, Any]:
    return {"type": "rest", "name": "hook", "path": "/hook", "system": "crm",
            "derive": {"entity": {"value": "customer"}, "action": {"value": "updated"}}, **extra}


def _risks(**extra: Any) -> list[str]:
    return replay_risks(RestEndpointConfig.model_validate(_endpoint(**extra)))


def test_replay_risk_unsigned_dedupe_header_is_named_with_the_fix() -> None:
    [risk] = _risks(auth=BODY_ONLY, dedupe={"header": "X-Request-Id"})
    assert "'hook'" in risk and "header X-Request-Id" in risk and "replay" in risk
    assert "at any later time" in risk and "{id}.{timestamp}.{body}" in risk


@pytest.mark.parametrize("scheme", ["github", "shopify"])
def test_replay_risk_provider_delivery_headers_are_unsigned(scheme: str) -> None:
    [risk] = _risks(auth={"scheme": scheme, "secret_env": "S"})
    assert "does not cover" in risk and "dedupe: {path: ...}" in risk


def test_replay_risk_none_when_the_dedupe_key_is_signed() -> None:
    assert _risks(auth=SIGNED_ID) == []
    assert _risks(auth=SIGNED_ID, dedupe={"header": "x-request-id"}) == []
    assert _risks(auth={"scheme": "standard_webhooks", "secret_env": "S"}) == []
    assert _risks(auth={"scheme": "stripe", "secret_env": "S"}) == []
    assert _risks(auth={"scheme": "hubspot", "secret_env": "S"}) == []
    assert _risks(auth=BODY_ONLY, dedupe={"path": "event.id"}) == []
    # no signature at all: the credential itself is what a capture exposes
    assert _risks(auth={"scheme": "api_key", "secret_env": "S"},
                  dedupe={"header": "X-Request-Id"}) == []
    assert _risks(dedupe={"header": "X-Request-Id"}) == []


def test_replay_risk_within_window_and_unsigned_or_unprotected_time() -> None:
    [risk] = _risks(auth={"scheme": "standard_webhooks", "secret_env": "S", "tolerance": 60},
                    dedupe={"header": "X-Other-Id"})
    assert "within the 60s window" in risk
    [risk] = _risks(auth={"scheme": "stripe", "secret_env": "S"},
                    dedupe={"cel": "headers['x-id']"})
    assert "CEL" in risk
    [nothing] = _risks(auth=BODY_ONLY)
    assert "nothing stops a replay" in nothing
    unsigned_time, no_dedupe = _risks(auth={**BODY_ONLY, "timestamp_header": "X-Timestamp"})
    assert "checked but not signed" in unsigned_time and "nothing stops" in no_dedupe


def test_default_dedupe_is_the_signed_id() -> None:
    def rule(auth: dict[str, Any]) -> Any:
        found = default_dedupe(RestEndpointConfig.model_validate(_endpoint(auth=auth)))
        return None if found is None else found.model_dump(exclude_none=True)

    assert rule({"scheme": "standard_webhooks", "secret_env": "S"}) == {"header": "webhook-id"}
    assert rule(SIGNED_ID) == {"header": "X-Request-Id"}
    assert rule(BODY_ONLY) is None


def _validate(tmp_path: Path, auth: dict[str, Any],
              **extra: Any) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "inbound": [_endpoint(name="crm-hook", auth=auth, **extra)],
        "routes": [{"name": "r", "bind": ["crm.#"],
                    "target": {"type": "rest", "url": "https://erp.example.com/x"}}],
    }))
    return subprocess.run([sys.executable, "-m", "middleware", "validate", "-c", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
                          env={**os.environ, "S": "the-secret"})  # validate reads secrets


def test_cli_validate_warns_about_unsigned_dedupe_and_stays_valid(tmp_path: Path) -> None:
    risky = _validate(tmp_path, BODY_ONLY, dedupe={"header": "X-Request-Id"})
    assert risky.returncode == 0, risky.stderr
    assert "valid (1 route(s)" in risky.stdout
    assert "warning: inbound endpoint 'crm-hook': dedupes on header X-Request-Id" in risky.stderr
    safe = _validate(tmp_path, SIGNED_ID)
    assert safe.returncode == 0 and "warning" not in safe.stderr, safe.stderr


def test_endpoint_start_logs_the_replay_risk(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from adapters.rest import RestInbound
    from middleware.adapter import AdapterContext
    from middleware.config.models import IngressConfig
    from middleware.ingress import Ingress
    from middleware.log import configure_logging

    monkeypatch.setenv("S", "the-secret")
    context = AdapterContext(None, None, None, tmp_path,  # type: ignore[arg-type]
                             Ingress(IngressConfig(port=0)))
    out = io.StringIO()
    configure_logging(json=True, level="info", stream=out)
    try:
        RestInbound(RestEndpointConfig.model_validate(_endpoint(
            name="risky", path="/risky", auth=BODY_ONLY, dedupe={"header": "X-Request-Id"},
        ))).start(context)
        RestInbound(RestEndpointConfig.model_validate(_endpoint(
            name="safe", path="/safe", auth=SIGNED_ID))).start(context)
    finally:
        configure_logging(json=True, level="warning")
    risks = [line for line in out.getvalue().splitlines() if "webhook replay risk" in line]
    assert len(risks) == 1 and '"endpoint": "risky"' in risks[0], out.getvalue()
    assert "header X-Request-Id" in risks[0] and '"level": "warning"' in risks[0]
