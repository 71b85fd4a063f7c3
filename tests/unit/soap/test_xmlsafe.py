"""Hardened parsing refuses every classic XML attack quickly and without touching anything."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
from lxml import etree

from adapters.soap.xmlsafe import XmlLimits, XmlRejected, parse_document, zeep_settings
from tests.sentinels import nobody_connected
from tests.unit.soap.helpers import realworld

LIMITS = XmlLimits()

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">'
    + b"".join(b'<!ENTITY lol%d "%s">' % (n, b"&lol%d;" % (n - 1) * 10) for n in range(1, 10))
    + b"]><lolz>&lol9;</lolz>"
)
QUADRATIC = (
    b'<?xml version="1.0"?><!DOCTYPE q [<!ENTITY a "' + b"x" * 40_000 + b'">]><q>'
    + b"&a;" * 20_000 + b"</q>"
)


def _rejected(data: bytes, limits: XmlLimits = LIMITS) -> tuple[str, float]:
    started = time.perf_counter()
    with pytest.raises(XmlRejected) as caught:
        parse_document(data, limits)
    return caught.value.reason, time.perf_counter() - started


@pytest.mark.parametrize("document", [BILLION_LAUGHS, QUADRATIC], ids=["laughs", "quadratic"])
def test_parse_document_refuses_entity_expansion_bombs_fast(document: bytes) -> None:
    reason, seconds = _rejected(document)
    assert reason == "dtd"
    assert seconds < 0.2


def test_parse_document_external_entity_never_opens_the_file(tmp_path: Path) -> None:
    # Given a FIFO: opening it for reading would be visible to a writer waiting on it
    fifo = tmp_path / "secret"
    os.mkfifo(fifo)
    opened = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: nobody has it open for reading
                time.sleep(0.01)
                continue
            opened.set()
            os.write(fd, b"TOP-SECRET")
            os.close(fd)
            return

    watcher = threading.Thread(target=watch)
    watcher.start()
    document = (f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY s SYSTEM "file://{fifo}">]>'
                f"<x>&s;</x>").encode()
    reason, _ = _rejected(document)
    watcher.join()
    assert reason == "dtd"
    assert not opened.is_set()


@pytest.mark.parametrize("template", [
    b'<?xml version="1.0"?><!DOCTYPE x SYSTEM "http://127.0.0.1:%d/evil.dtd"><x/>',
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY %% e SYSTEM "http://127.0.0.1:%d/e"> %%e;]><x/>',
], ids=["external-dtd", "parameter-entity"])
def test_parse_document_external_dtd_makes_no_connection(template: bytes) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        reason, _ = _rejected(template % listener.getsockname()[1])
        assert nobody_connected(listener)
    assert reason == "dtd"


def test_parse_document_refuses_oversized_before_parsing() -> None:
    reason, _ = _rejected(b"<a>" + b"x" * 2000 + b"</a>", XmlLimits(max_bytes=1000))
    assert reason == "too_large"


def test_parse_document_refuses_nesting_beyond_the_depth_limit() -> None:
    deep = b"<a>" * 20 + b"</a>" * 20
    assert parse_document(deep, XmlLimits(max_depth=20)).tag == "a"
    reason, _ = _rejected(deep, XmlLimits(max_depth=19))
    assert reason == "too_deep"


def test_parse_document_reports_malformed_input_with_position() -> None:
    with pytest.raises(XmlRejected, match="line 1") as caught:
        parse_document(b"<a><b></a>", LIMITS)
    assert caught.value.reason == "malformed"


def test_parse_document_accepts_utf8_bom_and_drops_comments_and_pis() -> None:
    sample = realworld("salesforce-outbound/aspnet-OutboundMessage1.xml").read_bytes()
    assert sample.startswith(b"\xef\xbb\xbf")
    assert etree.QName(parse_document(sample, LIMITS)).localname == "Envelope"
    root = parse_document(b"<a><!-- c --><?pi x?><b/></a>", LIMITS)
    assert [child.tag for child in root] == ["b"]


def test_zeep_settings_are_strict_and_forbid_dtds_entities_and_remote_documents() -> None:
    settings = zeep_settings()
    assert (settings.strict, settings.forbid_dtd, settings.forbid_entities,
            settings.forbid_external, settings.xml_huge_tree) == (True, True, True, True, False)
    assert zeep_settings() is not settings
