"""A new inbound protocol built on the ingress layer writes only ``parse`` (and its config).

The protocol here exists only in this test: HTML form posts (``application/x-www-form-urlencoded``)
whose ``id`` field is the sender's delivery id. Everything else (size and media-type limits, the
refusal answers, claims in the store, publishing with confirms on the event loop, the 202 / 200 /
503 semantics) comes from ``middleware.ingress``; the test checks it against the real broker:
fifty concurrent copies of one form publish one message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Literal
from urllib.parse import parse_qsl

import httpx
import pytest
from pydantic import Field
from starlette.requests import Request

from middleware.adapter import AdapterConfig
from middleware.broker.topology import queue_name
from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon, Role
from middleware.envelope import Envelope
from middleware.errors import Refused
from middleware.ingress.config import EndpointConfig
from middleware.ingress.endpoint import Incoming, IngressEndpoint
from middleware.plugins import AdapterSpec, register
from tests.integration.helpers import drain, queue_count, wait_until
from tests.integration.rest_helpers import catch_all_route

pytestmark = pytest.mark.integration

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class FormConfig(EndpointConfig):
    type: Literal["test-form"] = Field("test-form", description="Selects this adapter.")


class FormInbound(IngressEndpoint[None]):
    """The whole protocol: parse the form and derive one event from it."""

    adapter = "test-form"

    def __init__(self, config: FormConfig) -> None:
        super().__init__(config, ["application/x-www-form-urlencoded"])
        self._config = config

    async def parse(self, request: Request, body: bytes) -> Incoming[None]:
        fields = dict(parse_qsl(body.decode("utf-8", "replace")))
        if not fields.get("id"):
            raise Refused(422, "schema", "missing field", "the form needs an 'id' field")
        envelope = Envelope.new(source=self._config.envelope_source,
                                type=f"{self._config.system}.customer.updated", data=fields,
                                id=fields["id"], subject=fields.get("customer"))
        return Incoming([(fields["id"], envelope)])


def _build(config: AdapterConfig) -> FormInbound:
    assert isinstance(config, FormConfig)
    return FormInbound(config)


@pytest.fixture
def daemon(prefix: str, make_config: Callable[..., LoadedConfig]) -> Iterator[Daemon]:
    register(AdapterSpec("test-form", inbound_config=FormConfig, inbound=_build))
    section = {"type": "test-form", "name": f"{prefix}-form", "path": f"/forms/{prefix}",
               "system": prefix, "max_body_bytes": 200}
    started = Daemon(make_config([catch_all_route(prefix)], inbound=[section]), Role.INGRESS)
    started.start()
    yield started
    started.stop()


def _at_once(url: str, body: bytes, copies: int) -> list[httpx.Response]:
    async def send() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=copies, max_keepalive_connections=copies)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            return list(await asyncio.gather(*[client.post(url, content=body, headers=FORM)
                                               for _ in range(copies)]))

    return asyncio.run(send())


def test_ingress_new_protocol_needs_only_parse_and_publishes_a_form_once(
    amqp_url: str, prefix: str, daemon: Daemon,
) -> None:
    assert daemon.ingress is not None
    url = f"http://127.0.0.1:{daemon.ingress.port}/forms/{prefix}"
    queue = queue_name(f"{prefix}-r")
    # When fifty copies of one form arrive at once
    answers = _at_once(url, b"id=F-1&customer=C-7", 50)
    # Then one copy stored it (202), the others learnt it was stored (200) or must retry (503)
    statuses = [answer.status_code for answer in answers]
    assert statuses.count(202) == 1, statuses
    assert set(statuses) <= {200, 202, 503}
    assert all(a.headers["Retry-After"] == "10" for a in answers if a.status_code == 503)
    wait_until(lambda: queue_count(amqp_url, queue) >= 1, 10)
    # and a resend afterwards is a duplicate
    again = httpx.post(url, content=b"id=F-1&customer=C-7", headers=FORM, timeout=10)
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    # The layer's checks apply to the new protocol too, answered as JSON
    missing = httpx.post(url, content=b"customer=C-7", headers=FORM, timeout=10)
    assert missing.status_code == 422 and missing.json()["error"] == "missing field"
    wrong = httpx.post(url, content=b'{"id": "F-2"}', timeout=10,
                       headers={"Content-Type": "application/json"})
    assert wrong.status_code == 415
    assert wrong.json()["accepted"] == ["application/x-www-form-urlencoded"]
    big = httpx.post(url, content=b"id=F-3&x=" + b"a" * 300, headers=FORM, timeout=10)
    assert big.status_code == 413
    # Exactly one message reached the broker, carrying the form
    messages = drain(amqp_url, queue)
    assert [properties.message_id for properties, _ in messages] == ["F-1"]
