"""W3C Trace Context values from senders: continued when valid, ignored when not, bounded."""

from __future__ import annotations

import io

import pytest
from opentelemetry import trace
from starlette.datastructures import Headers

from middleware.log import configure_logging
from middleware.tracing.w3c import (
    MAX_LENGTH,
    format_context,
    outgoing,
    parent_from_headers,
    parent_from_values,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{SPAN}-01"


def _parent(context: object) -> trace.SpanContext:
    return trace.get_current_span(context).get_span_context()  # type: ignore[arg-type]


def test_w3c_valid_traceparent_and_tracestate_name_the_remote_parent() -> None:
    context = parent_from_values(VALID, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    assert context is not None
    parent = _parent(context)
    assert (f"{parent.trace_id:032x}", f"{parent.span_id:016x}") == (TRACE, SPAN)
    assert parent.is_remote and parent.trace_flags.sampled
    assert parent.trace_state.to_header() == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    assert format_context(parent) == (VALID, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")


@pytest.mark.parametrize("value", [
    "", "garbage", VALID.upper(), f"ff-{TRACE}-{SPAN}-01", f"0x-{TRACE}-{SPAN}-01",
    f"00-{'0' * 32}-{SPAN}-01", f"00-{TRACE}-{'0' * 16}-01", f"00-{TRACE}-{SPAN}-01-extra",
    f"00-{TRACE[:-1]}g-{SPAN}-01", f"00-{TRACE}-{SPAN}", f"00_{TRACE}_{SPAN}_01",
    VALID + "\r\nX-Injected: 1", "00-" + "a" * 10_000, "\x00" * 55, "é" * 55,
    VALID + " " * MAX_LENGTH,
])
def test_w3c_malformed_traceparent_is_ignored_not_an_error(value: str) -> None:
    assert parent_from_values(value, "a=b") is None
    assert outgoing(value, "a=b") == {}


def test_w3c_a_later_version_with_more_fields_is_read_as_far_as_known() -> None:
    # the recommendation: a version above 00 may add fields; the known ones still count
    context = parent_from_values(f"cc-{TRACE}-{SPAN}-01-whatever-comes-next")
    assert context is not None and f"{_parent(context).trace_id:032x}" == TRACE
    # what goes on is always written as version 00, never the sender's text
    assert format_context(_parent(context))[0] == VALID


def test_w3c_overlong_tracestate_is_dropped_and_the_traceparent_kept() -> None:
    context = parent_from_values(VALID, "a=" + "b" * MAX_LENGTH)
    assert context is not None and not _parent(context).trace_state
    assert outgoing(VALID, "a=" + "b" * MAX_LENGTH) == {"traceparent": VALID}


def test_w3c_invalid_tracestate_members_are_not_sent_on() -> None:
    assert outgoing(VALID, "not a list\r\nX: y") == {"traceparent": VALID}
    assert outgoing(VALID, "vendor=ok") == {"traceparent": VALID, "tracestate": "vendor=ok"}
    assert outgoing(None, "vendor=ok") == {}


def test_w3c_two_traceparent_headers_are_ambiguous_and_ignored() -> None:
    one = Headers(raw=[(b"traceparent", VALID.encode())])
    two = Headers(raw=[(b"traceparent", VALID.encode()),
                       (b"traceparent", f"00-{TRACE}-{'1' * 16}-01".encode())])
    assert parent_from_headers(one) is not None
    assert parent_from_headers(two) is None
    assert parent_from_headers(Headers(raw=[])) is None


def test_w3c_several_tracestate_headers_are_one_list() -> None:
    headers = Headers(raw=[(b"traceparent", VALID.encode()), (b"tracestate", b"a=1"),
                           (b"tracestate", b"b=2")])
    context = parent_from_headers(headers)
    assert context is not None and _parent(context).trace_state.to_header() == "a=1,b=2"


def test_w3c_hostile_tracestate_adds_no_log_lines() -> None:
    out = io.StringIO()
    configure_logging(json=True, level="info", stream=out)
    try:
        for state in (",".join(f"k{i}=v" for i in range(40)), "BAD KEY=sender text",
                      "a=1,a=2", "x=\x01"):
            assert parent_from_values(VALID, state) is not None  # the parent still counts
            outgoing(VALID, state)
    finally:
        configure_logging(json=True, level="warning")
    assert out.getvalue() == ""
