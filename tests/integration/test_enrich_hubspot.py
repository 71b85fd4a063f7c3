"""A HubSpot contact.creation webhook carries only ``objectId``; the route fetches the contact
from the CRM API and creates the customer in the ERP. Real RabbitMQ, the whole daemon (ingress
and worker), a HubSpot-v3-signed request, the CRM API and the ERP as real HTTP servers on
loopback. One run shows the four behaviours: the properties fetched and mapped, a 503 retried
after its Retry-After, a 404 dead-lettered with stage 'enrich', and a cache hit sparing a GET.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from middleware import headers as h
from middleware.broker.topology import dlq_name
from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon, Role
from tests.integration.helpers import drain, wait_until
from tests.integration.rest_helpers import Peer, hmac_b64, json_response

pytestmark = pytest.mark.integration

SECRET = "hubspot-client-secret"
TOKEN = "pat-na1-crm-read"
PUBLIC = "https://hooks.example.com"
MAPPING = """\
mapping: hubspot-contact-to-erp-customer
source: {system: hubspot}
target: {system: erp}
fields:
  external_id: {from: objectId, required: true}
  email: {from: contact.email, required: true}
  name: {expr: "source.contact.firstname + ' ' + source.contact.lastname"}
"""


class Crm:
    """The CRM API: contacts by id; 404 for unknown ones; 503 (Retry-After: 1) once for 777."""

    def __init__(self) -> None:
        self.busy = {"777": 1}
        self.gets: list[tuple[str, float]] = []

    async def __call__(self, request: Request, body: bytes) -> Response:
        object_id = request.url.path.rsplit("/", 1)[-1]
        self.gets.append((object_id, time.monotonic()))
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return json_response({"message": "authentication required"}, 401)
        if self.busy.get(object_id):
            self.busy[object_id] -= 1
            return json_response({"status": "error", "category": "RATE_LIMITS"}, 503,
                                 **{"Retry-After": "1"})
        if object_id == "404":
            return json_response({"status": "error", "message": "resource not found"}, 404)
        return json_response({"id": object_id, "properties": {
            "email": f"c{object_id}@example.com", "firstname": "Ada",
            "lastname": f"No{object_id}"}})


async def erp(request: Request, body: bytes) -> Response:
    return json_response({"id": "A-1"}, 201)


def _webhook(prefix: str, object_id: int, event_id: int) -> dict[str, Any]:
    return {"eventId": event_id, "subscriptionId": 12345, "portalId": 62515,
            "occurredAt": int(time.time() * 1000), "subscriptionType": "contact.creation",
            "attemptNumber": 0, "objectId": object_id, "changeSource": "CRM", "appId": 54321}


def _send(url: str, path: str, events: list[dict[str, Any]]) -> httpx.Response:
    body, stamp = json.dumps(events).encode(), str(int(time.time() * 1000))
    signature = hmac_b64(SECRET, b"POST" + (PUBLIC + path).encode() + body + stamp.encode())
    return httpx.post(url, content=body, headers={
        "Content-Type": "application/json", "X-HubSpot-Request-Timestamp": stamp,
        "X-HubSpot-Signature-v3": signature}, timeout=10)


def test_enrich_hubspot_contact_creation_becomes_an_erp_create_with_fetched_properties(
    amqp_url: str, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    make_config: Callable[..., LoadedConfig],
) -> None:
    monkeypatch.setenv(f"{prefix.upper()}_HUBSPOT_SECRET", SECRET)
    monkeypatch.setenv(f"{prefix.upper()}_CRM_TOKEN", TOKEN)
    (tmp_path / "hubspot-contact-to-erp.yaml").write_text(MAPPING)
    crm = Crm()
    path = f"/hooks/{prefix}/hubspot"
    with Peer(crm) as crm_api, Peer(erp) as erp_api:
        loaded = make_config(
            [{"name": f"{prefix}-contacts", "bind": [f"{prefix}.contact.created"],
              "mapping": "hubspot-contact-to-erp.yaml",
              "enrich": [{"system": "hubspot",
                          "get": "/crm/v3/objects/contacts/{payload.objectId}"
                                 "?properties=email,firstname,lastname",
                          "select": "properties", "into": "contact",
                          "cache": {"ttl": 60, "max_entries": 100}}],
              "target": {"type": "rest", "url": f"{erp_api.url}/api/customers"}}],
            inbound=[{"type": "rest", "name": f"{prefix}-hubspot", "path": path,
                      "system": prefix,
                      "derive": {
                          "entity": {"value": "contact"},
                          "action": {"path": "subscriptionType", "pattern": "\\.(\\w+)$",
                                     "map": {"creation": "created"}},
                          "subject": {"path": "objectId"},
                          "id": {"cel": "'hubspot-' + string(payload.portalId) + '-' + "
                                        "string(payload.eventId)"}},
                      "auth": {"scheme": "hubspot", "public_url": PUBLIC,
                               "secret_env": f"{prefix.upper()}_HUBSPOT_SECRET"}}],
            systems={"hubspot": {"type": "rest", "base_url": crm_api.url, "timeout": 2,
                                 "auth": {"type": "bearer",
                                          "token_env": f"{prefix.upper()}_CRM_TOKEN"}}})
        daemon = Daemon(loaded, Role.ALL)
        daemon.start()
        try:
            assert wait_until(lambda: all(daemon.readiness().values()), 10)
            assert daemon.ingress is not None
            url = f"http://127.0.0.1:{daemon.ingress.port}{path}"
            # When HubSpot posts a batch: a contact that exists, a busy one, a missing one
            answer = _send(url, path, [_webhook(prefix, 123, 1), _webhook(prefix, 777, 2),
                                       _webhook(prefix, 404, 3)])
            assert answer.status_code == 202, answer.text
            # Then 123 and (after its retry) 777 are created in the ERP with CRM properties
            assert wait_until(lambda: len(erp_api.requests) == 2, 15)
            created = {json.loads(r[3])["external_id"]: json.loads(r[3])
                       for r in erp_api.requests}
            assert created[123] == {"external_id": 123, "email": "c123@example.com",
                                    "name": "Ada No123"}
            assert created[777]["email"] == "c777@example.com"
            gets_777 = [at for object_id, at in crm.gets if object_id == "777"]
            assert len(gets_777) == 2 and gets_777[1] - gets_777[0] >= 0.95
            # ... and 404 is dead-lettered with stage enrich, never sent to the ERP
            letters: list[Any] = []
            assert wait_until(lambda: bool(letters.extend(
                drain(amqp_url, dlq_name(f"{prefix}-contacts"))) or letters), 10)
            [(props, body)] = letters
            assert props.headers[h.STAGE] == "enrich"
            assert props.headers[f"{h.DETAIL}status"] == "404"
            assert "HTTP 404" in props.headers[h.REASON]
            assert json.loads(body)["data"]["objectId"] == 404
            # When 123 comes again within the cache's TTL (a second portal app's event)
            again = _send(url, path, [_webhook(prefix, 123, 4)])
            assert again.status_code == 202, again.text
            assert wait_until(lambda: len(erp_api.requests) == 3, 10)
            # Then the ERP got it, but the CRM was asked for 123 only once
            assert [object_id for object_id, _ in crm.gets].count("123") == 1
            assert json.loads(erp_api.requests[2][3])["email"] == "c123@example.com"
        finally:
            daemon.stop()
