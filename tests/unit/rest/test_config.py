"""REST adapter config: the shipped example validates; mistakes are reported with file, line,
path and a hint, all at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.rest import PollConfig, RestEndpointConfig, RestTargetConfig
from adapters.rest.inbound import default_dedupe
from middleware.config.loader import load_config
from middleware.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[3] / "mappings" / "examples" / "rest-webhooks.yaml"


def _load(tmp_path: Path, inbound: list[dict[str, Any]], target: dict[str, Any] | None = None,
          ) -> ConfigError | None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "inbound": inbound,
        "routes": [{"name": "r", "bind": ["crm.#"], "target": target or {
            "type": "rest", "url": "https://erp.example.com/x"}}],
    }))
    try:
        load_config(path)
    except ConfigError as exc:
        return exc
    return None


def _endpoint(**extra: Any) -> dict[str, Any]:
    return {"type": "rest", "name": "hook", "path": "/hook", "system": "crm",
            "derive": {"entity": {"value": "customer"}, "action": {"value": "updated"}}, **extra}


def test_config_example_validates_with_every_adapter_typed() -> None:
    loaded = load_config(EXAMPLE)
    kinds = [type(section) for section in loaded.config.inbound]
    assert kinds == [RestEndpointConfig] * 4 + [PollConfig]
    assert isinstance(loaded.config.routes[0].target, RestTargetConfig)


def test_config_reports_every_problem_with_location_and_hint(tmp_path: Path) -> None:
    error = _load(tmp_path, [
        _endpoint(auth={"scheme": "shopfy", "secret_env": "X"}),
        _endpoint(name="two", auth={"scheme": "github", "secret_evn": "X"}),
        {"type": "poll", "name": "p", "schedule": "every day", "system": "erp",
         "url": "https://erp/x", "pagination": {"style": "cursor"},
         "derive": {"entity": {"value": "a"}, "action": {"value": "b"}}},
    ], target={"type": "rest", "url": "ftp://erp/x", "concurency": 2})
    assert error is not None
    text = str(error)
    assert "inbound.0.auth" in text and "shopfy" in text
    assert "secret_evn" in text and "did you mean 'secret_env'" in text
    assert "cron" in text and "cursor_path" in text
    assert "routes.0.target.url" in text and "did you mean 'concurrency'" in text
    assert all(problem.line for problem in error.problems)


def test_config_provider_dedupe_defaults_follow_auth_scheme() -> None:
    def dedupe(auth: dict[str, Any] | None) -> Any:
        config = RestEndpointConfig.model_validate(_endpoint(auth=auth))
        rule = default_dedupe(config)
        return None if rule is None else rule.model_dump(exclude_none=True)

    assert dedupe({"scheme": "shopify", "secret_env": "S"}) == {"header": "X-Shopify-Webhook-Id"}
    assert dedupe({"scheme": "github", "secret_env": "S"}) == {"header": "X-GitHub-Delivery"}
    assert dedupe({"scheme": "stripe", "secret_env": "S"}) == {"path": "id"}
    assert dedupe({"scheme": "hubspot", "secret_env": "S"}) == {"path": "eventId"}
    assert dedupe(None) is None


def test_config_missing_secret_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from adapters.rest.signatures import build_verifier

    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    config = RestEndpointConfig.model_validate(
        _endpoint(auth={"scheme": "github", "secret_env": "NOT_SET_ANYWHERE"}))
    assert config.auth is not None
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE"):
        build_verifier(config.auth, "inbound.hook.auth")


def test_config_endpoints_need_unique_paths_and_names(tmp_path: Path) -> None:
    from adapters.rest import RestInbound
    from middleware.adapter import AdapterContext
    from middleware.config.models import IngressConfig
    from middleware.errors import SilobridgeError
    from middleware.ingress import Ingress

    ingress = Ingress(IngressConfig(port=0))
    context = AdapterContext(None, None, None, tmp_path, ingress)  # type: ignore[arg-type]
    RestInbound(RestEndpointConfig.model_validate(_endpoint())).start(context)
    with pytest.raises(SilobridgeError, match="already served by 'hook'"):
        RestInbound(RestEndpointConfig.model_validate(_endpoint(name="b"))).start(context)
    with pytest.raises(SilobridgeError, match="named 'hook'"):
        RestInbound(RestEndpointConfig.model_validate(_endpoint(path="/other"))).start(context)
