"""Logs carry message identity and never secrets, payloads or personal data (middleware.log)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from middleware.log import MASK, bind_message, configure_logging, get_logger, mask_sensitive

SALESFORCE_OUTBOUND = (
    Path(__file__).resolve().parents[3]
    / "shared/realworld/salesforce-outbound/aspnet-OutboundMessage1.xml"
)


def _mask(**fields: Any) -> dict[str, Any]:
    return dict(mask_sensitive(None, "info", dict(fields)))


def _text(value: str) -> str:
    masked: str = _mask(event=value)["event"]
    return masked


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def _json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# --- by key ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "db_password",
        "passwd",
        "client_secret",
        "access_token",
        "Authorization",
        "Proxy-Authorization",
        "X-Api-Key",
        "api_key",
        "apikey",
        "cookie",
        "Set-Cookie",
        "session_id",
        "sessionId",
        "private_key",
        "credentials",
        "auth",
    ],
)
def test_mask_secret_keys_replaced(key: str) -> None:
    assert _mask(**{key: "hunter2-value"})[key] == MASK


def test_mask_secret_keys_nested_in_dicts_and_lists() -> None:
    masked = _mask(
        request={"headers": {"Authorization": "Basic dXNlcjpwYXNz", "Accept": "text/xml"}},
        targets=[{"name": "erp", "token": "t-123"}],
    )
    assert masked["request"] == {"headers": {"Authorization": MASK, "Accept": "text/xml"}}
    assert masked["targets"] == [{"name": "erp", "token": MASK}]


@pytest.mark.parametrize("key", ["payload", "body", "data", "envelope", "content"])
def test_mask_payload_keys_withheld_with_size_only(key: str) -> None:
    masked = _mask(**{key: {"name": "Henrik Nielsen", "city": "Redmond"}})
    assert masked[key] == "<withheld len=2>"


def test_mask_bytes_withheld_under_any_key() -> None:
    masked = _mask(raw=b"<Envelope>Henrik</Envelope>")
    assert masked["raw"] == "<withheld len=27>"


# --- by pattern -----------------------------------------------------------------------------


def test_mask_wsse_password_element_in_text() -> None:
    soap = (
        '<wsse:UsernameToken><wsse:Username>svc-sync</wsse:Username><wsse:Password Type="'
        "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
        '#PasswordText">S3cr3t!pw</wsse:Password></wsse:UsernameToken>'
    )
    masked = _text(f"HTTP Post to http://erp/soap:\n{soap}")
    assert "S3cr3t!pw" not in masked
    assert f'#PasswordText">{MASK}</wsse:Password>' in masked
    assert "<wsse:Username>svc-sync</wsse:Username>" in masked


def test_mask_salesforce_session_id_in_real_outbound_message() -> None:
    if not SALESFORCE_OUTBOUND.exists():
        pytest.skip(f"{SALESFORCE_OUTBOUND} not present")
    xml = SALESFORCE_OUTBOUND.read_text(encoding="utf-8-sig")
    masked = _text(xml)
    assert "BSGSRAzG9lPxyKRPjJ3" not in masked
    assert f"<SessionId>{MASK}</SessionId>" in masked
    assert "<sf:City>Redmond</sf:City>" in masked


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        ("Authorization: Bearer abc.def-ghi_jkl", "abc.def-ghi_jkl", "Authorization: ***"),
        ("sent with bearer 9f8e7d6c5b4a3210 to erp", "9f8e7d6c5b4a3210", "to erp"),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9P",
            "eyJzdWIiOiIxMjM0NTY3ODkwIn0",
            "jwt <token>",
        ),
        ("GET /api?api_key=abc123&page=2", "abc123", "page=2"),
        ("Cookie: JSESSIONID=1A2B3C4D5E6F; lang=de", "1A2B3C4D5E6F", "lang=de"),
        ('{"password": "hunter2", "user": "svc"}', "hunter2", '"user": "svc"'),
        ("broker amqp://svc:s3cr3t@rabbitmq:5672/", "s3cr3t", "amqp://svc:***@rabbitmq:5672/"),
        ("dsn postgresql://app:pw%40x@db.example.com/erp", "pw%40x", "***@db.example.com/erp"),
    ],
)
def test_mask_secret_patterns_in_text(text: str, secret: str, kept: str) -> None:
    masked = _text(text)
    assert secret not in masked
    assert kept in masked


def test_mask_emails_in_text() -> None:
    masked = _text("customer henrik.nielsen+crm@example.co.uk changed, cc ops@erp.example")
    assert masked == "customer <email> changed, cc <email>"


@pytest.mark.parametrize(
    "phone",
    [
        "+86 138 0013 8000",
        "+1 (555) 123-4567",
        "+4930123456",
        "(030) 1234-5678",
        "555-123-4567",
        "13800138000",
    ],
)
def test_mask_phone_numbers(phone: str) -> None:
    assert _text(f"call {phone} today") == "call <phone> today"


@pytest.mark.parametrize(
    "iban", ["DE89370400440532013000", "DE89 3704 0044 0532 0130 00", "GB29 NWBK 6016 1331 9268 19"]
)
def test_mask_valid_ibans(iban: str) -> None:
    assert _text(f"pay to {iban} EUR") == "pay to <iban> EUR"


def test_mask_iban_with_bad_checksum_stays() -> None:
    assert _text("code DE00370400440532013000") == "code DE00370400440532013000"


@pytest.mark.parametrize(
    "card", ["4111111111111111", "4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005"]
)
def test_mask_luhn_valid_card_numbers(card: str) -> None:
    assert _text(f"card {card} charged") == "card <card> charged"


def test_mask_card_number_failing_luhn_stays() -> None:
    assert _text("ref 4111111111111112") == "ref 4111111111111112"


def test_mask_numbers_logged_as_int() -> None:
    masked = _mask(phone=13800138000, card=4111111111111111, qty=12, ok=True)
    assert masked == {"phone": "<phone>", "card": "<card>", "qty": 12, "ok": True}


@pytest.mark.parametrize(
    "innocent",
    [
        "2026-11-26T11:31:51.123+00:00",
        "2026-11-26",
        "order SO-10023 amount 1234.56 CNY",
        "3f2b8c1e-9a4d-4e7b-8f60-2c1d5e7a9b10",
        "127.0.0.1:9080",
        "version 3.10.25",
        "route crm-orders-to-erp via silobridge.route.crm-orders.retry.2",
        "epoch 1732620711000",
        "customer C-1001 -> account A-77",
        "token refreshed after 3 attempts",
        "DEADBEEF12345678",
    ],
)
def test_mask_innocent_text_unchanged(innocent: str) -> None:
    assert _text(innocent) == innocent


def test_mask_identity_keys_kept_but_sender_chosen_ids_masked() -> None:
    ids = {"message_id": "evt_1NZ8q2", "correlation_id": "c-1", "route": "r"}
    assert _mask(**ids) == ids
    # senders choose message and correlation ids: personal data there is masked as anywhere
    masked = _mask(message_id="jane.doe@example.com", correlation_id="4111111111111111",
                   route="r")
    assert "jane.doe@example.com" not in str(masked) and "4111111111111111" not in str(masked)
    assert masked["route"] == "r"
    assert _mask(message_id="jane.doe@example.com") == _mask(message_id="jane.doe@example.com")


# --- configured output ----------------------------------------------------------------------


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_json_lines_carry_message_identity() -> None:
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    log = get_logger("silobridge.test")
    with bind_message("m-1", "c-9", "crm-orders"):
        log.info("delivered", target="erp", attempt=1)
    log.info("idle")
    first, second = _json_lines(out)
    assert first["event"] == "delivered"
    assert (first["message_id"], first["correlation_id"], first["route"]) == (
        "m-1",
        "c-9",
        "crm-orders",
    )
    assert first["level"] == "info" and first["logger"] == "silobridge.test"
    assert "timestamp" in first
    assert "message_id" not in second


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_unbinds_identity_after_exception() -> None:
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    log = get_logger("silobridge.test")
    with pytest.raises(RuntimeError), bind_message("m-2", None, "r"):
        raise RuntimeError("boom")
    log.info("next")
    assert "message_id" not in _json_lines(out)[0]


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_masks_our_events_and_foreign_library_lines() -> None:
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    get_logger("silobridge.test").info(
        "sent", headers={"Authorization": "Bearer zzzzzzzzzz"}, payload={"email": "a@b.example"}
    )
    logging.getLogger("zeep.transports").warning(
        "HTTP Post to %s:\n%s",
        "http://erp/soap",
        "<wsse:Password>pw-in-zeep</wsse:Password><Email>henrik@example.com</Email>",
    )
    ours, zeep = _json_lines(out)
    assert ours["headers"] == {"Authorization": MASK}
    assert ours["payload"] == "<withheld len=1>"
    assert zeep["logger"] == "zeep.transports" and zeep["level"] == "warning"
    assert "pw-in-zeep" not in zeep["event"] and "henrik@" not in zeep["event"]
    assert "http://erp/soap" in zeep["event"]


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_masks_exception_text() -> None:
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    try:
        raise ValueError("no account for henrik@example.com")
    except ValueError:
        get_logger("silobridge.test").exception("mapping failed")
    (line,) = _json_lines(out)
    assert "ValueError" in line["exception"]
    assert "henrik@example.com" not in line["exception"]


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_console_on_tty_json_elsewhere() -> None:
    tty, pipe = _Tty(), io.StringIO()
    configure_logging(stream=tty)
    get_logger("t").info("hello", password="pw")
    configure_logging(stream=pipe)
    get_logger("t").info("hello")
    assert "hello" in tty.getvalue() and "pw" not in tty.getvalue().replace("password", "")
    with pytest.raises(json.JSONDecodeError):
        json.loads(tty.getvalue())
    assert _json_lines(pipe)[0]["event"] == "hello"


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_json_flag_overrides_tty() -> None:
    tty = _Tty()
    configure_logging(json=True, stream=tty)
    get_logger("t").info("hello")
    assert _json_lines(tty)[0]["event"] == "hello"


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_level_filters_and_reconfigure_does_not_double() -> None:
    out = io.StringIO()
    configure_logging(json=True, level="warning", stream=out)
    configure_logging(json=True, level="warning", stream=out)
    log = get_logger("t")
    log.info("hidden")
    log.warning("shown")
    assert [line["event"] for line in _json_lines(out)] == ["shown"]
