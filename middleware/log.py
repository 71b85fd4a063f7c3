"""Logging setup: structlog on top of stdlib logging, one event per line, secrets masked.

Every record — ours and those of pika, zeep, uvicorn — goes through one stdlib handler whose
formatter runs the same structlog chain, so a zeep debug line that dumps a SOAP envelope is
masked exactly like our own events. The chain ends in JSON lines where a collector reads the
output (containers, files, pipes) and in the console renderer where a person does (a TTY).

Masking runs last before rendering, after tracebacks became text, so nothing reaches the
output unmasked:

- by key, at any depth: values under keys that name secrets (password, secret, token,
  authorization, api_key, cookie, session...) become ``***``; values under keys that carry
  business payloads (payload, body, data, envelope) and any ``bytes`` are withheld, with
  their size only, because payloads hold personal data and must never be logged;
- by pattern, inside every other string: passwords in URLs (``amqp://user:***@host``),
  ``Authorization:`` headers, bearer tokens, JWTs, ``key=value`` secrets (query strings,
  cookies), XML elements such as ``wsse:Password`` or ``SessionId``, e-mail addresses, phone
  numbers, IBANs (mod-97 checked) and card numbers (Luhn checked). The checksums keep order
  numbers and amounts readable.

A worker binds the message identity once per delivery with :func:`bind_message`; every line
logged inside carries ``message_id``, ``correlation_id`` and ``route``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

import structlog
from opentelemetry import trace
from structlog.types import EventDict, Processor, WrappedLogger

__all__ = ["MASK", "add_trace_ids", "bind_message", "configure_logging", "get_logger",
           "mask_sensitive"]

MASK = "***"
"""What a secret is replaced with."""

_IDENTITY_KEYS = frozenset({"route", "timestamp", "level", "logger", "trace_id", "span_id"})
"""Keys only our own code fills (config names, metadata); exempt from pattern masking.

``message_id`` and ``correlation_id`` are not among them: senders choose them (a delivery-id
header, a SOAP field), so an e-mail address or a card number put there is masked like anywhere
else. Masking is deterministic, so the lines of one message still join on the masked id."""

_SECRET_KEY = re.compile(
    r"passw(?:or)?d|pwd|secret|token|authori[sz]ation|^auth$|api_?key|cookie|session|"
    r"credential|private_?key|signature"
)
_PAYLOAD_KEYS = frozenset({"payload", "body", "data", "envelope", "content"})

# Every pattern below runs on sender-controlled text (a Content-Type header, a SOAP fault string)
# and must stay linear in its length. A backtracking regex is tried at every start position, so a
# pattern whose failed attempt scans ahead is quadratic even without nested quantifiers: each
# one may start only where a failed attempt cannot be repeated from the next position (at the
# start of a run of its characters, or at a literal), or is driven by a loop that remembers
# what already failed (``_mask_xml``, ``_mask_url_credentials``). ``bench/masking.py`` measures
# the hostile inputs; tests/unit/test_log_masking_linear.py keeps them fast.
_URL_CREDENTIALS = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
_NON_SPACE = re.compile(r"\S+")
_AUTH_HEADER = re.compile(r"(?i)\b((?:proxy-)?authorization\s*[:=]\s*)[^\r\n,;]+")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
# Tried once per run of [\w-]: the atomic group keeps the first "eyJ" at a word boundary (a later
# one in the same run reaches the same run end and fails the same way).
_JWT = re.compile(r"(?<![\w-])(?>([\w-]*?)\beyJ)[\w-]{5,}\.[\w-]{5,}\.[\w-]+")
# Starts at the keyword itself: whatever word characters precede it are kept anyway, and a lazy
# prefix scanned from every word boundary made a long "a-a-a-..." header quadratic.
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)((?:password|passwd|pwd|secret|token|api[_-]?key|apikey|"
    r"session[_-]?id|sessid|sid)\"?\s*[:=]\s*\"?)([^\s\"&;,<>]+)"
)
_XML_NAMES = ("password", "passwd", "secret", "token", "sessionid", "apikey",
              "binarysecuritytoken")
_XML_OPEN = re.compile(rf"(?i)<(?:[\w.-]+:)?({'|'.join(_XML_NAMES)})\b[^<>]*>")
_XML_CLOSE = {name: re.compile(rf"(?i)</(?:[\w.-]+:)?{name}\s*>") for name in _XML_NAMES}
# Starts only at the beginning of a run of local-part characters: the leftmost match starts
# there anyway, and an unanchored start rescanned the run from each of its characters.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_CARD = re.compile(r"(?<![\w.-])[2-6](?:[ -]?\d){12,18}(?![\w.-])")  # brands start 2-6
_PHONE = re.compile(
    r"(?<![\w+])\+\d[\d ().-]{6,20}\d(?!\w)"  # international: +86 138 0013 8000
    r"|(?<![\w-])\(\d{2,4}\)\s?\d{3,4}[-. ]?\d{4}(?![\w-])"  # (555) 123-4567
    r"|(?<![\w.-])\d{3}[-. ]\d{3}[-. ]\d{4}(?![\w.-])"  # 555-123-4567
    r"|(?<![\w.-])1[3-9]\d{9}(?![\w.-])"  # mainland China mobile: 13800138000
)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _iban_ok(text: str) -> bool:
    iban = text.replace(" ", "")
    if not 15 <= len(iban) <= 34:
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return "<card>" if 13 <= len(digits) <= 19 and _luhn_ok(digits) else match.group()


def _mask_iban(match: re.Match[str]) -> str:
    # The pattern may run on into a following word ("... 3000 EUR"): drop trailing groups
    # until the checksum holds, so the IBAN is masked and the word survives.
    text = match.group()
    end = len(text)
    while end >= 15:
        if _iban_ok(text[:end]):
            return "<iban>" + text[end:]
        end = text.rfind(" ", 0, end)
    return text


def _mask_phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return "<phone>" if 8 <= len(digits) <= 15 else match.group()


def _mask_xml(text: str) -> str:
    """Mask the content of secret XML elements (``<wsse:Password>``, ``<SessionId>``...).

    The content runs to the first matching close tag, children and CDATA included. A regex
    with a lazy ``.*?`` rescans to the end of the text from every unclosed open tag; this loop
    remembers which names have no close tag left, so each is searched for at most once.
    """
    if "<" not in text:
        return text
    parts: list[str] = []
    kept = searched = 0
    unclosed: set[str] = set()
    while (opening := _XML_OPEN.search(text, searched)) is not None:
        name = opening.group(1).lower()
        closing = None if name in unclosed else _XML_CLOSE[name].search(text, opening.end())
        if closing is None:
            unclosed.add(name)
            searched = opening.end()
            continue
        parts += [text[kept:opening.end()], MASK]
        kept, searched = closing.start(), closing.end()
    parts.append(text[kept:])
    return "".join(parts)


def _mask_url_token(match: re.Match[str]) -> str:
    # Within one whitespace-free token, every "user:" is followed by an "@" before the end of
    # text[:last @], so each attempt either matches (and consumes) or fails within its own
    # "://user" stretch: linear, where the whole text let each "://" scan to the same far end.
    token = match.group()
    last_at = token.rfind("@") + 1
    if not last_at or "://" not in token:
        return token
    head = _URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{MASK}@", token[:last_at])
    return head + token[last_at:]


def _mask_url_credentials(text: str) -> str:
    """``scheme://user:password@host`` -> ``scheme://user:***@host``."""
    return _NON_SPACE.sub(_mask_url_token, text) if "://" in text else text


def _mask_text(text: str) -> str:
    """Mask what looks like a secret or personal data inside free text (order matters).

    Linear in the length of *text* (see the note above the patterns).
    """
    text = _mask_xml(text)
    text = _mask_url_credentials(text)
    text = _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _JWT.sub(lambda m: f"{m.group(1)}<token>", text)
    text = _SECRET_ASSIGNMENT.sub(lambda m: f"{m.group(1)}{MASK}", text)
    text = _EMAIL.sub("<email>", text)
    text = _IBAN.sub(_mask_iban, text)
    text = _CARD.sub(_mask_card, text)
    return _PHONE.sub(_mask_phone, text)


def _withheld(value: object) -> str:
    size = len(value) if isinstance(value, str | bytes | bytearray | Mapping | list | tuple) else 0
    return f"<withheld len={size}>"


def _mask_value(key: str | None, value: Any) -> Any:
    if key is not None:
        normalized = key.lower().replace("-", "_")
        if normalized in _PAYLOAD_KEYS:
            return _withheld(value)
        if _SECRET_KEY.search(normalized):
            return MASK
    if isinstance(value, str):
        return _mask_text(value)
    if isinstance(value, bytes | bytearray):
        return _withheld(value)
    if isinstance(value, Mapping):
        return {k: _mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_mask_value(None, v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000_000:
        # A phone or card number logged as an int is still personal data.
        text = str(value)
        masked = _mask_text(text)
        return value if masked == text else masked
    return value


def mask_sensitive(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secrets, payloads and personal data in every value."""
    return {
        key: value if key in _IDENTITY_KEYS else _mask_value(key, value)
        for key, value in event_dict.items()
    }


def add_trace_ids(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: ``trace_id`` and ``span_id`` of the span current where the line is
    logged (``middleware.tracing`` makes a message's span current while it is processed), so
    a log search and a trace lead to each other. Nothing is added while no span is current."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event_dict.setdefault("trace_id", f"{span_context.trace_id:032x}")
        event_dict.setdefault("span_id", f"{span_context.span_id:016x}")
    return event_dict


def configure_logging(
    json: bool | None = None, level: str | int = "info", stream: TextIO | None = None
) -> None:
    """Route structlog and stdlib logging to *stream* (stderr) through one masking chain.

    ``json=None`` picks JSON lines unless *stream* is a terminal. Safe to call again: the
    root handler is replaced, not added, so reconfiguring never doubles lines.
    """
    out = stream if stream is not None else sys.stderr
    as_json = not out.isatty() if json is None else json
    numeric_level = (
        level if isinstance(level, int) else logging.getLevelNamesMapping()[level.upper()]
    )

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_ids,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty() and not os.environ.get("NO_COLOR"))
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            mask_sensitive,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    # pika reports one failed connect as six ERROR lines and logs every connect at INFO; the
    # broker client logs each event once, with its connection name, so pika only speaks when
    # something is wrong that we do not report ourselves (at debug level it speaks fully).
    logging.getLogger("pika").setLevel(
        numeric_level if numeric_level <= logging.DEBUG else logging.CRITICAL
    )
    # OpenTelemetry warns about every malformed tracestate member, quoting it: a sender could
    # add a log line (its own text) to each request. The header is ignored either way
    # (middleware.tracing.w3c); the warnings are kept for debug level.
    logging.getLogger("opentelemetry.trace.span").setLevel(
        numeric_level if numeric_level <= logging.DEBUG else logging.ERROR
    )

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A logger named after its module, so lines say where they come from."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


@contextmanager
def bind_message(message_id: str, correlation_id: str | None, route: str) -> Iterator[None]:
    """Tag every line logged inside the block with the message's identity, then forget it.

    Context variables follow the worker thread (and asyncio task), so concurrent deliveries
    never see each other's ids, and leaving the block unbinds them even on an exception.
    """
    with structlog.contextvars.bound_contextvars(
        message_id=message_id, correlation_id=correlation_id, route=route
    ):
        yield
