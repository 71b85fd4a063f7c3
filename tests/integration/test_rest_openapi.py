"""The ingress serves an OpenAPI document that holds: schemathesis fuzzes every endpoint against
it (valid and invalid bodies, wrong media types, missing auth) and sees no 5xx and no answer the
document does not describe."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon, Role
from tests.integration.rest_helpers import catch_all_route, endpoint

pytestmark = pytest.mark.integration

KEY = "openapi-test-key"


@pytest.fixture
def ingress_url(
    prefix: str, tmp_path: Path, make_config: Callable[..., LoadedConfig],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    monkeypatch.setenv("OPENAPI_TEST_KEY", KEY)
    (tmp_path / "customer.json").write_text(json.dumps({
        "type": "object", "required": ["customer_no"], "additionalProperties": False,
        "properties": {"customer_no": {"type": "string", "minLength": 1, "maxLength": 40},
                       "name": {"type": "string"}, "credit_limit": {"type": "number"}}}))
    derive = {"entity": {"value": "customer"}, "action": {"value": "updated"},
              "subject": {"path": "customer_no"}}
    sections: list[dict[str, Any]] = [
        endpoint(prefix, "open", json_schema="customer.json", derive=derive),
        endpoint(prefix, "keyed", json_schema="customer.json", derive=derive, batch=False,
                 auth={"scheme": "api_key", "secret_env": "OPENAPI_TEST_KEY"}),
    ]
    daemon = Daemon(make_config([catch_all_route(prefix)], inbound=sections), Role.INGRESS)
    daemon.start()
    assert daemon.ingress is not None
    yield f"http://127.0.0.1:{daemon.ingress.port}"
    daemon.stop()


def test_openapi_document_lists_endpoints_answers_and_security(ingress_url: str,
                                                               prefix: str) -> None:
    document = httpx.get(f"{ingress_url}/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    operation = document["paths"][f"/hooks/{prefix}/keyed"]["post"]
    assert set(operation["responses"]) == {"200", "202", "400", "401", "413", "415", "422",
                                           "503"}
    assert document["components"]["securitySchemes"][f"{prefix}-keyed"] == {
        "type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert "401" not in document["paths"][f"/hooks/{prefix}/open"]["post"]["responses"]


def _fuzz(operation: Any, mode: schemathesis.GenerationMode, headers: dict[str, str] | None,
          statuses: set[int]) -> None:
    """Run schemathesis' default checks on generated cases of one operation."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        statuses.add(case.call_and_validate(headers=headers).status_code)

    check()


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode))
def test_openapi_schemathesis_finds_no_5xx_or_undocumented_answer(
    ingress_url: str, mode: schemathesis.GenerationMode,
) -> None:
    # schemathesis' pytest plugin does not run under pytest 9 yet, so drive its strategies
    # with hypothesis directly: the same cases and the same checks.
    schema = schemathesis.openapi.from_url(f"{ingress_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 2
    statuses: set[int] = set()
    for operation in operations:
        headers = {"X-API-Key": KEY} if operation.path.endswith("/keyed") else None
        _fuzz(operation, mode, headers, statuses)
    # the fuzzing reached the interesting answers, not only one kind
    if mode is schemathesis.GenerationMode.POSITIVE:
        assert 202 in statuses, statuses
    else:
        assert statuses & {400, 415, 422}, statuses
    assert all(status < 500 for status in statuses)
