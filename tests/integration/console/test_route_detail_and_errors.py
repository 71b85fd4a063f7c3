"""The route detail and the errors search on the real broker: retry tier depths one by one,
the route's recent failures, and failures searched by text, route, stage and error class, paged,
each carrying what the console needs to link to its dead letter."""

from __future__ import annotations

import pytest

from middleware.broker.topology import retry_name
from tests.integration.console.conftest import Console
from tests.integration.helpers import publish_events, wait_until

pytestmark = pytest.mark.integration


def test_console_route_detail_and_error_search(console: Console) -> None:
    ids = console.dead_letter(3)
    route_a, route_b = console.route_a, console.route_b
    # then one event the target keeps failing retryably: it waits in a retry tier
    console.target.fail_all, console.target.retryable = 1_000_000, True
    with console.client("viewer") as viewer:
        detail = viewer.get(f"/api/v1/routes/{route_a}").json()
        tiers = detail["retry"]["tiers"]
        assert [t["tier"] for t in tiers] == list(range(1, len(tiers) + 1)) and tiers
        assert tiers[0]["queue"] == retry_name(route_a, 1)
        assert all(t["depth"] == 0 for t in tiers), tiers
        assert {f["id"] for f in detail["recent_failures"]} == set(ids)
        assert detail["mapping"] is None  # this route delivers the data as it is

        publish_events(console.amqp_url, console.prefix, 1)
        assert wait_until(lambda: sum(t["depth"] or 0 for t in viewer.get(
            f"/api/v1/routes/{route_a}").json()["retry"]["tiers"]) == 1, 20)

        everything = viewer.get("/api/v1/errors").json()
        assert everything["total"] == 3 and everything["stages"] == ["deliver"]
        assert everything["error_classes"] == ["DeliveryError"]
        assert {e["route"] for e in everything["errors"]} == {route_a}
        one = viewer.get("/api/v1/errors", params={"q": "c-1"}).json()
        assert [e["subject"] for e in one["errors"]] == ["C-1"]
        assert viewer.get("/api/v1/errors", params={"route": route_b}).json()["total"] == 0
        assert viewer.get("/api/v1/errors", params={"stage": "validate"}).json()["total"] == 0
        assert viewer.get("/api/v1/errors", params={"error": "DeliveryError", "q": "scripted"}
                          ).json()["total"] == 3
        page = viewer.get("/api/v1/errors", params={"limit": 2, "offset": 2}).json()
        assert page["total"] == 3 and len(page["errors"]) == 1
        assert viewer.get("/api/v1/errors", params={"route": "nope"}).status_code == 404
    with console.client("scoped") as scoped:
        assert scoped.get("/api/v1/errors", params={"route": route_b}).status_code == 404
        assert scoped.get("/api/v1/errors").json()["routes"] == [route_a]
