"""HTTP status classification and Retry-After parsing shared by REST and SOAP targets."""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp
import httpx
import pytest

from adapters._http import (
    Outcome,
    classify_status,
    parse_retry_after,
    status_error,
    transport_error,
)


@pytest.mark.parametrize(("status", "outcome"), [
    (200, Outcome.DELIVERED), (201, Outcome.DELIVERED), (204, Outcome.DELIVERED),
    (408, Outcome.RETRYABLE), (429, Outcome.RETRYABLE), (500, Outcome.RETRYABLE),
    (502, Outcome.RETRYABLE), (503, Outcome.RETRYABLE),
    (400, Outcome.PERMANENT), (401, Outcome.PERMANENT), (404, Outcome.PERMANENT),
    (409, Outcome.PERMANENT), (422, Outcome.PERMANENT), (301, Outcome.PERMANENT),
])
def test_classify_status_per_design(status: int, outcome: Outcome) -> None:
    assert classify_status(status) is outcome


def test_parse_retry_after_seconds_and_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_status_error_keeps_status_and_truncated_body() -> None:
    error = status_error(422, "x" * 2000, None, "erp")
    assert not error.retryable
    assert error.details["status"] == 422
    assert len(error.details["body"]) == 500
    retry = status_error(503, "busy", "7", "erp")
    assert retry.retryable and retry.retry_after == 7.0


def test_transport_error_is_retryable_except_bad_url() -> None:
    timeout = transport_error(aiohttp.ServerTimeoutError("t"), "erp")
    assert timeout.retryable and "timed out" in str(timeout)
    assert transport_error(aiohttp.ServerDisconnectedError(), "erp").retryable
    assert not transport_error(aiohttp.InvalidURL("ftp:/x"), "erp").retryable
    token = transport_error(httpx.ConnectTimeout("t"), "token endpoint")
    assert token.retryable and "timed out" in str(token)
    assert transport_error(httpx.ConnectError("refused"), "token endpoint").retryable
