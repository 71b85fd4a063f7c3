"""Numbers in webhook bodies and headers (issue 11 finding 5): exact ids, no crash on digits."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from starlette.requests import Request

from adapters._derive import Derive, compile_derive, parse_time, resolve_path
from adapters.rest.body import parse_json
from middleware.errors import Refused
from middleware.ingress.reading import read_body

# differ only in the last digit: as floats both are 1.8446744073709552e19
BIG_A, BIG_B = 2**64 + 1, 2**64 + 2


def test_parse_json_keeps_integers_beyond_64_bits_exact_as_digits() -> None:
    document = parse_json(f'[{{"eventId":{BIG_A}}},{{"eventId":{BIG_B}}}]'.encode())
    assert [event["eventId"] for event in document] == [str(BIG_A), str(BIG_B)]
    mixed = parse_json(b'{"min":-9223372036854775808,"below":-9223372036854775809,'
                       b'"max":18446744073709551615,"f":0.12345678901234567890,"s":"1"}')
    assert mixed == {"min": -(2**63), "below": "-9223372036854775809", "max": 2**64 - 1,
                     "f": 0.12345678901234568, "s": "1"}
    orjson.dumps(mixed)  # what the envelope does with it: every value is writable


def test_parse_json_huge_integer_kept_as_digits_without_int_conversion() -> None:
    digits = "7" * 300  # orjson alone reads it as a float, int() would be slow on longer ones
    assert parse_json(f'{{"n":{digits}}}'.encode()) == {"n": digits}
    with pytest.raises(Refused) as caught:  # beyond a double's range orjson refuses: a 400
        parse_json(f'{{"n":{"7" * 4000}}}'.encode())
    assert caught.value.status == 400


def test_parse_json_still_strict_and_never_crashes_on_depth() -> None:
    with pytest.raises(Refused) as caught:
        parse_json(b'{"n": 18446744073709551617, "x": NaN}')
    assert caught.value.status == 400
    def nested(depth: int) -> bytes:
        return b"[" * depth + b"18446744073709551617" + b"]" * depth

    assert str(parse_json(nested(500))).count("[") == 500
    with pytest.raises(Refused) as deep:  # past Python's recursion limit: a 400, not a 500
        parse_json(nested(1000))
    assert deep.value.status == 400 and "nested" in deep.value.error


def test_derive_big_event_ids_stay_distinct() -> None:
    deriver = compile_derive(Derive.model_validate({
        "entity": {"value": "contact"}, "action": {"value": "created"},
        "id": {"path": "eventId"}}))
    a, b = parse_json(f'[{{"eventId":{BIG_A}}},{{"eventId":{BIG_B}}}]'.encode())
    assert deriver.derive(a, {}).id == str(BIG_A)
    assert deriver.derive(b, {}).id == str(BIG_B)


@pytest.mark.parametrize("value", ["١٥٦٤١١٣٦٠٠", "1564113600²", "nan", "1e10", "9" * 5000,
                                   "/Date(١٥٦٤١١٣٦٠٠٠٠٠)/"])
def test_parse_time_reads_ascii_digits_only(value: str) -> None:
    with pytest.raises(ValueError):
        parse_time(value)


def test_resolve_path_index_is_ascii_digits_only() -> None:
    assert resolve_path({"a": [1, 2]}, "a.1") == 2
    assert resolve_path({"a": [1, 2]}, "a.-1") == 2
    assert resolve_path({"a": [1, 2]}, "a.¹") is None
    assert resolve_path({"a": [1, 2]}, "a.--1") is None


def _request(content_length: bytes) -> Request:
    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    return Request({"type": "http", "method": "POST", "path": "/", "headers": [
        (b"content-type", b"application/json"), (b"content-length", content_length)]}, receive)


@pytest.mark.parametrize("declared", [b"\xb2", b"\xb9\xb2\xb3", b"-1", b""])
def test_read_body_odd_content_length_is_no_crash(declared: bytes) -> None:
    # latin-1 superscripts pass str.isdigit() but not int(); the streamed size still counts
    body = asyncio.run(read_body(_request(declared), 1024, ["application/json"]))
    assert body == b"{}"


def test_read_body_declared_size_of_5000_digits_is_413_not_a_crash() -> None:
    with pytest.raises(Refused) as caught:  # int() refuses strings over 4300 digits
        asyncio.run(read_body(_request(b"9" * 5000), 1024, ["application/json"]))
    assert caught.value.status == 413


def test_read_body_declared_size_over_limit_is_413_even_with_leading_zeros() -> None:
    with pytest.raises(Refused) as caught:
        asyncio.run(read_body(_request(b"0002048"), 1024, ["application/json"]))
    assert caught.value.status == 413
    assert asyncio.run(read_body(_request(b"0000002"), 1024, ["application/json"])) == b"{}"
