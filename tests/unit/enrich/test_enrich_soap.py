"""SOAP enrich steps on a route of the in-memory broker, zeep against a NAV-style Customer page
served by spyne on loopback: the Key read after the mapping, a Server fault retried, an empty
Read dead-lettered, a hanging service bounded by its timeout, operations and arguments checked
against the WSDL at start; and a mapping with xref lookups after an enrich step runs on a store
thread (the answer arrives on a SOAP pool thread, which must not wait for the store)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from adapters.soap.enrich import SoapSystem, SoapSystemConfig
from middleware import headers as h
from middleware.adapter import Delivered
from middleware.broker.topology import dlq_name
from middleware.config.enrich import EnrichStep
from middleware.envelope import Envelope
from middleware.errors import ConfigError
from middleware.mapping import load_mapping
from tests.integration.nav_page import NavPage, running_nav
from tests.integration.soap_helpers import realworld
from tests.unit.enrich.helpers import enriched_route, system_context
from tests.unit.pipeline_helpers import Scripted, take, wait_until

READ_KEY = {"system": "nav", "after_mapping": True, "select": "Key", "into": "Customer.Key",
            "call": {"operation": "Read", "arguments": {"No": "{payload.Customer.No}"}}}


@pytest.fixture
def nav(tmp_path: Path) -> Iterator[tuple[NavPage, Path, str]]:
    wsdl = tmp_path / "customer.wsdl"
    with running_nav(wsdl) as (page, url):
        page.add("C1", "Ada")
        yield page, wsdl, url


def system(wsdl: Path, url: str, **extra: Any) -> SoapSystem:
    return SoapSystem(SoapSystemConfig.model_validate(
        {"type": "soap", "wsdl": str(wsdl), "address": url, "timeout": 2, **extra}))


def update(prefix: str, no: str, n: int = 1) -> Envelope:
    """An envelope whose payload is already NAV's shape (the route has no mapping)."""
    return Envelope.new(source="crm/test", type=f"{prefix}.customer.updated", subject=no,
                        data={"Customer": {"No": no, "Name": f"Name {n}"}})


def test_enrich_soap_after_mapping_puts_the_read_key_into_the_payload(
        tmp_path: Path, prefix: str, nav: tuple[NavPage, Path, str]) -> None:
    page, wsdl, url = nav
    with enriched_route(tmp_path, prefix, system(wsdl, url), [READ_KEY]) as r:
        r.route.send(update(prefix, "C1"))
        assert wait_until(lambda: len(r.target.calls) == 1)
        assert r.target.calls[0][1] == {"Customer": {"No": "C1", "Name": "Name 1",
                                                     "Key": page.records["C1"]["Key"]}}


def test_enrich_soap_server_fault_is_retried_then_delivered(
        tmp_path: Path, prefix: str, nav: tuple[NavPage, Path, str]) -> None:
    page, wsdl, url = nav
    page.busy["C1"] = 1
    with enriched_route(tmp_path, prefix, system(wsdl, url), [READ_KEY]) as r:
        r.route.send(update(prefix, "C1"))
        assert wait_until(lambda: len(r.target.calls) == 1)
        assert page.calls == ["Read", "Read"]
        assert r.route.broker.depth(dlq_name(prefix)) == 0


def test_enrich_soap_empty_read_dead_letters_with_stage_enrich(
        tmp_path: Path, prefix: str, nav: tuple[NavPage, Path, str]) -> None:
    _page, wsdl, url = nav
    with enriched_route(tmp_path, prefix, system(wsdl, url), [READ_KEY]) as r:
        r.route.send(update(prefix, "C404"))
        (letter,) = take(r.route.broker, dlq_name(prefix), 1)
        assert letter.headers[h.STAGE] == "enrich"
        assert letter.headers[h.REASON] == (
            "permanent: enrich step 1 (nav): answered nothing at 'Key'; the record may not "
            "exist (yet): replay the message once it does, or set required: false to go on "
            "without it")
        assert r.target.calls == []


def test_enrich_soap_hanging_service_costs_its_timeout_and_blocks_no_other_message(
        tmp_path: Path, prefix: str, nav: tuple[NavPage, Path, str]) -> None:
    page, wsdl, url = nav
    page.add("C2", "Bob")
    # longer than the timeout; its pool thread is free after 6 s. The bounds below (4 s) sit
    # well under the hang and well above the 0.3 s timeout: 2 s failed once on a slow machine
    page.slow["C1"] = 6.0
    with enriched_route(tmp_path, prefix, system(wsdl, url, timeout=0.3),
                        [READ_KEY], retry={"attempts": 0}) as r:
        started = time.monotonic()
        r.route.send(update(prefix, "C1", n=1), update(prefix, "C2", n=2))
        assert wait_until(lambda: len(r.target.calls) == 1, 4)
        assert r.target.calls[0][1]["Customer"]["No"] == "C2"
        (letter,) = take(r.route.broker, dlq_name(prefix), 1)
        assert time.monotonic() - started < 4
        assert letter.headers[h.STAGE] == "enrich"
        assert "Read timed out" in letter.headers[h.REASON]
        assert letter.headers[h.REASON].startswith("retries_exhausted: ")


def test_enrich_soap_operations_and_arguments_are_checked_against_the_wsdl(
        tmp_path: Path, nav: tuple[NavPage, Path, str]) -> None:
    _page, wsdl, url = nav
    nav_system = system(wsdl, url)
    nav_system.start(system_context(tmp_path))
    try:
        with pytest.raises(ConfigError) as wrong_operation:
            nav_system.bind(EnrichStep.model_validate(
                {**READ_KEY, "call": {"operation": "Raed"}}), "routes.0.enrich.0")
        assert ("routes.0.enrich.0.call.operation: no operation 'Raed' in "
                "{urn:microsoft-dynamics-schemas/page/customer}Customer_Service (did you mean "
                "'Read'?); has Read, Update") in str(wrong_operation.value)
        with pytest.raises(ConfigError) as wrong_argument:
            nav_system.bind(EnrichStep.model_validate(
                {**READ_KEY, "call": {"operation": "Read", "arguments": {"Number": "1"}}}),
                "routes.0.enrich.0")
        assert "Read has no argument 'Number'; has No" in str(wrong_argument.value)
    finally:
        nav_system.close()


def test_enrich_soap_then_mapping_with_xref_lookups_runs_off_the_pool_thread(
        tmp_path: Path, prefix: str, nav: tuple[NavPage, Path, str]) -> None:
    _page, wsdl, url = nav
    (tmp_path / "m.yaml").write_text(
        "mapping: with-lookup\nsource: {system: crm}\ntarget: {system: erp}\nfields:\n"
        "  account: {from: customer_no, lookup: {xref: crm.customer -> erp.account, "
        "on_missing: fail}}\n  nav_name: current.Name\n")
    step = {"system": "nav", "into": "current",
            "call": {"operation": "Read", "arguments": {"No": "{payload.nav_no}"}}}
    with enriched_route(tmp_path, prefix, system(wsdl, url), [step],
                        mapping=load_mapping(tmp_path / "m.yaml")) as r:
        r.route.stores.xref.link("crm.customer", "K-1", "erp.account", "A-77")
        xref, threads = r.route.stores.xref, []
        real_lookup = xref.lookup

        def lookup(*args: Any) -> Any:
            threads.append(threading.current_thread().name)
            return real_lookup(*args)

        xref.lookup = lookup  # type: ignore[method-assign]
        r.route.send(Envelope.new(source="crm/test", type=f"{prefix}.customer.updated",
                                  data={"customer_no": "K-1", "nav_no": "C1"}))
        assert wait_until(lambda: len(r.target.calls) == 1)
        assert r.target.calls[0][1] == {"account": "A-77", "nav_name": "Ada"}
        assert len(threads) == 1 and threads[0].startswith(f"store-{prefix}")


def test_enrich_soap_answer_past_the_size_limit_dead_letters(
        tmp_path: Path, prefix: str, nav: tuple[NavPage, Path, str]) -> None:
    page, wsdl, url = nav
    page.add("BIG", "x" * 200_000)
    with enriched_route(tmp_path, prefix, system(wsdl, url, max_response_bytes=10_000),
                        [READ_KEY]) as r:
        r.route.send(update(prefix, "BIG"), update(prefix, "C1", n=2))
        (letter,) = take(r.route.broker, dlq_name(prefix), 1)
        assert letter.headers[h.STAGE] == "enrich"
        assert letter.headers[h.REASON].startswith(
            "permanent: enrich step 1 (nav): Read answered more than 10000 bytes")
        assert wait_until(lambda: len(r.target.calls) == 1)  # a normal answer still fits
        assert r.target.calls[0][1]["Customer"]["No"] == "C1"


class Answering(Scripted):
    """A target that accepts and answers the id it created."""

    def deliver(self, envelope: Envelope, payload: Any) -> Future[Delivered]:
        self.calls.append((envelope.id, payload))
        future: Future[Delivered] = Future()
        future.set_result(Delivered(response={"account_id": "A-9"}))
        return future


def test_enrich_soap_captures_read_what_the_steps_added(
        tmp_path: Path, prefix: str, nav: tuple[NavPage, Path, str]) -> None:
    _page, wsdl, url = nav
    (tmp_path / "m.yaml").write_text(
        "mapping: capture-enriched\nsource: {system: crm}\ntarget: {system: erp}\nfields:\n"
        "  name: current.Name\ncapture:\n"
        "  - {xref: nav.customer -> erp.account, source: current.No, response: account_id}\n")
    step = {"system": "nav", "into": "current",
            "call": {"operation": "Read", "arguments": {"No": "{payload.nav_no}"}}}
    with enriched_route(tmp_path, prefix, system(wsdl, url), [step], target=Answering(),
                        mapping=load_mapping(tmp_path / "m.yaml")) as r:
        envelope = Envelope.new(source="crm/test", type=f"{prefix}.customer.updated",
                                data={"nav_no": "C1"})
        r.route.send(envelope)
        assert wait_until(lambda: r.route.stores.idempotency.seen(prefix, envelope.id))
        assert r.target.calls[0][1] == {"name": "Ada"}
        # the link's source key came from the Read's answer, not from the event
        assert r.route.stores.xref.lookup("nav.customer", "C1", "erp.account") == "A-9"


def test_enrich_soap_real_nav_codeunit_wsdl_binds_with_its_quirks(tmp_path: Path) -> None:
    # Given the real NAV codeunit WSDL (default namespace switched on the binding elements,
    # _Result wrappers; see realworld/SOURCES.md), started offline as an enrich system
    wsdl = realworld("erp-wsdl/nav-codeunit-ServiceProg.wsdl")
    nav_system = SoapSystem(SoapSystemConfig.model_validate({"type": "soap", "wsdl": str(wsdl)}))
    nav_system.start(system_context(tmp_path))
    try:
        # Then a step's operation and argument are checked against it, with its own names
        call = nav_system.bind(EnrichStep.model_validate({
            "system": "nav", "into": "stock", "select": "return_value",
            "call": {"operation": "GetItemStock", "arguments": {"itemNo2_TM": "{payload.sku}"}},
        }), "routes.0.enrich.0")
        prepared = call.prepare(Envelope.new(source="s", type="a.b.c", data={}), {"sku": 4711})
        assert prepared.request == {"itemNo2_TM": 4711}  # a lone placeholder keeps its type
        with pytest.raises(ConfigError, match=r"GetItemStock has no argument 'itemNo'.*"
                                              r"did you mean 'itemNo2_TM'"):
            nav_system.bind(EnrichStep.model_validate({
                "system": "nav", "into": "stock",
                "call": {"operation": "GetItemStock", "arguments": {"itemNo": "1"}},
            }), "routes.0.enrich.0")
    finally:
        nav_system.close()
