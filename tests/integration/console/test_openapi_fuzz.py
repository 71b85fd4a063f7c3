"""schemathesis against the admin API's own OpenAPI document, signed in as an admin (the role
that reaches every handler): no 5xx, every answer documented."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from middleware.console.auth import Authenticator
from middleware.console.rbac import ENDPOINTS
from tests.integration.console.conftest import Console, password_hash

pytestmark = pytest.mark.integration


def _fuzz(operation: Any, mode: schemathesis.GenerationMode, headers: dict[str, str],
          statuses: set[int]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=25, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        # Rules no JSON Schema states (a link joins two namespaces; replay 'ids' or 'all'; the
        # edited event is a CloudEvent with the same id) answer 422 with details: the check
        # that every schema-valid body is accepted cannot hold for them. Every other check runs.
        # A request head over the server's limit is refused before the API sees it (431, in
        # the document): a rejection too, which the negative-data check does not count as one.
        answer = case.call(headers=headers)
        excluded = [positive_data_acceptance]
        if answer.status_code == 431:
            excluded.append(negative_data_rejection)
        case.validate_response(answer, excluded_checks=excluded, headers=headers)
        statuses.add(answer.status_code)

    check()


def _nothing_to_break(operation: Any) -> bool:
    """A public operation without parameters or body (GET /login, /oidc/start): no invalid
    request of it exists, so negative mode has nothing to generate."""
    definition = operation.definition.raw
    return definition.get("security") == [] and not definition.get("parameters") \
        and "requestBody" not in definition


def test_console_openapi_schemathesis_finds_no_5xx(console: Console) -> None:
    # a fuzzing admin of its own, with a name no generated case can hit by chance
    assert console.daemon.console is not None
    store = console.daemon.console.store
    name = f"fuzz-{uuid.uuid4().hex}"
    store.add_user(name, password_hash(), "admin")
    token = Authenticator(store, console.daemon.config.console).issue_token(name, "fuzz")
    schema = schemathesis.openapi.from_url(f"{console.url}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(ENDPOINTS) - 1  # schemathesis leaves out the document itself
    statuses: set[int] = set()
    for mode in schemathesis.GenerationMode:
        for operation in operations:
            if mode is schemathesis.GenerationMode.NEGATIVE and _nothing_to_break(operation):
                continue
            _fuzz(operation, mode, {"Authorization": f"Bearer {token}"}, statuses)
    assert all(status < 500 for status in statuses), statuses
    assert {200, 404, 422} <= statuses, statuses
