"""Masking stays linear on hostile text (issue 11, finding 2) and still masks what it did.

A 20 kB Content-Type of ``a-a-a-...`` took the old patterns 27 s in the field (21 s for 16 kB
here) and stalled every endpoint: a pattern was retried at every start position and each failed
attempt scanned to the end. Each hostile input of ``bench.masking`` is masked here at 128 kB
within 2 s; the linear code needs about 0.1 s on this machine (0.2 s for the slowest input),
so a busy machine still passes. The old code failed this test by far: 19 s for ``<password>``
and 24 s for ``a`` (run here), and from the 16 kB figures growing with the square of the size,
about a minute for ``a.`` and several minutes for ``password-``, ``eyJ-`` and ``a-``. The remaining
inputs guard patterns that were linear already.
"""

from __future__ import annotations

import time

import pytest

from bench.masking import HOSTILE
from middleware.log import MASK, mask_sensitive

SIZE = 128 * 1024
BUDGET = 2.0  # seconds; see the module docstring for both codes' figures


def _text(value: str) -> str:
    masked: str = mask_sensitive(None, "info", {"event": value})["event"]
    return masked


@pytest.mark.parametrize("unit", HOSTILE)
def test_mask_hostile_text_is_linear(unit: str) -> None:
    text = unit * (SIZE // len(unit))
    started = time.perf_counter()
    _text(text)
    elapsed = time.perf_counter() - started
    assert elapsed < BUDGET, f"masking 128 kB of {unit!r}... took {elapsed:.2f}s"


def test_mask_hostile_header_in_nested_log_fields_is_linear() -> None:
    # Given the way the finding was reached: a huge Content-Type logged as a header value
    headers = {"content-type": "application/json; " + "a-" * (SIZE // 2)}
    started = time.perf_counter()
    mask_sensitive(None, "warning", {"event": "webhook rejected", "headers": headers})
    assert time.perf_counter() - started < BUDGET


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a JWT after a hyphen (a word boundary inside a run of [\w-]) is still found
        ("x-eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl end", "x-<token> end"),
        # the first "eyJ" of a run fails, and so would every later one: nothing masked
        ("eyJ-eyJ-abcdefgh.ij eyJ-eyJ-x", "eyJ-eyJ-abcdefgh.ij eyJ-eyJ-x"),
        # secret assignments after any word characters
        ("my-api-token=abc123&x=1", f"my-api-token={MASK}&x=1"),
        ("Cookie: JSESSIONID=1A2B; lang=de", f"Cookie: JSESSIONID={MASK}; lang=de"),
        # several URLs in one token, and one without credentials before them
        ("a://u:p1@h b://x c://u:p2@h://v:p3@w",
         f"a://u:{MASK}@h b://x c://u:{MASK}@h://v:{MASK}@w"),
        # an unclosed secret element does not hide a later closed one of another name
        ("<password>open <secret>s1</secret>", f"<password>open <secret>{MASK}</secret>"),
        # the content runs to the first matching close tag, children included
        ("<Token><a>x</a></TOKEN> tail", f"<Token>{MASK}</TOKEN> tail"),
        ("<ns:SessionId a='1'>abc</ns:sessionid>", f"<ns:SessionId a='1'>{MASK}</ns:sessionid>"),
        # e-mail local parts are matched from the start of their run only, as before
        ("mail a.b-c+d@example.com now", "mail <email> now"),
    ],
)
def test_mask_linear_patterns_keep_masking(text: str, expected: str) -> None:
    assert _text(text) == expected
