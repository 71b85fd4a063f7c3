"""The scheduled poller against a real paginated HTTP API on loopback and the real broker.

A run interrupted half-way keeps its watermark; the next run resumes from it and publishes what
was missing, without gaps and without publishing any record twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response

from middleware.broker.topology import queue_name
from middleware.cli import main
from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon, Role
from tests.integration.helpers import drain, queue_count, wait_until
from tests.integration.rest_helpers import Peer, catch_all_route, json_response

pytestmark = pytest.mark.integration

PAGE = 10


class ProductApi:
    """Products changed since ``updated_since`` (inclusive), in every pagination style."""

    def __init__(self, count: int) -> None:
        # three products share each timestamp, so page boundaries split equal watermarks
        self.products = [{"sku": f"P-{n:03}", "price": n,
                          "updated_at": f"2026-01-01T00:{n // 3:02}:00Z"} for n in range(count)]
        self.fail_on_request: int | None = None
        self.requests = 0

    async def __call__(self, request: Request, body: bytes) -> Response:
        self.requests += 1
        if self.requests == self.fail_on_request:
            return json_response({"error": "database restarting"}, 503)
        query = request.query_params
        since = query.get("updated_since", "")
        rows = sorted((p for p in self.products if p["updated_at"] >= since),
                      key=lambda p: (p["updated_at"], p["sku"]))
        style = request.url.path.rsplit("/", 1)[-1]
        limit = int(query.get("limit", PAGE))
        start = {"cursor": int(query.get("cursor") or 0),
                 "page": (int(query.get("page", 1)) - 1) * limit,
                 "offset": int(query.get("offset", 0)),
                 "link": int(query.get("from", 0))}[style]
        chunk = rows[start:start + limit]
        more = start + limit < len(rows)
        if style == "cursor":
            return json_response({"items": chunk, "next_cursor": str(start + limit) if more
                                  else None})
        if style == "link":
            headers = {"Link": f'</products/link?from={start + limit}&limit={limit}'
                               f'&updated_since={since}>; rel="next"'} if more else {}
            return json_response({"items": chunk}, **headers)
        return json_response({"items": chunk})


def _poller(prefix: str, url: str, pagination: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "poll", "name": f"{prefix}-products", "schedule": "0 2 * * *",
        "system": prefix, "url": url, "records": "items", "pagination": pagination,
        "watermark": {"param": "updated_since", "path": "updated_at"},
        "derive": {"entity": {"value": "product"}, "action": {"value": "upserted"},
                   "subject": {"path": "sku"}},
    }


def _poll_once(loaded: LoadedConfig, prefix: str) -> int:
    return main(["poll", f"{prefix}-products", "--once", "-c", str(loaded.path)])


def _published(amqp_url: str, prefix: str) -> list[dict[str, Any]]:
    return [orjson.loads(body) for _, body in drain(amqp_url, queue_name(f"{prefix}-r"))]


def test_poll_interrupted_run_resumes_from_watermark_without_gaps_or_duplicates(
    amqp_url: str, prefix: str, make_config: Callable[..., LoadedConfig],
    capsys: pytest.CaptureFixture[str],
) -> None:
    api = ProductApi(25)
    with Peer(api) as server:
        poller = _poller(prefix, f"{server.url}/products/cursor",
                         {"style": "cursor", "cursor_path": "next_cursor", "size": PAGE})
        poller["retry"] = {"attempts": 0}  # the page is not tried again within the run
        loaded = make_config([catch_all_route(prefix)], inbound=[poller])
        # Given the API fails on the third page of the first run
        api.fail_on_request = 3
        assert _poll_once(loaded, prefix) == 1
        assert "HTTP 503" in capsys.readouterr().err
        first = _published(amqp_url, prefix)
        assert len(first) == 2 * PAGE
        # When the next run starts from the same (unchanged) watermark
        assert _poll_once(loaded, prefix) == 0
        assert "published 5, skipped 20" in capsys.readouterr().out
        second = _published(amqp_url, prefix)
        # Then every product was published exactly once over both runs
        skus = Counter(e["subject"] for e in first + second)
        assert sorted(skus) == [p["sku"] for p in api.products]
        assert set(skus.values()) == {1}
        assert {e["type"] for e in first + second} == {f"{prefix}.product.upserted"}
        assert second[-1]["time"].startswith("2026-01-01T00:08:00")
        # And a later run sends only what changed since the watermark
        api.products[3]["price"] = 1000
        api.products[3]["updated_at"] = "2026-01-02T00:00:00Z"
        api.products.append({"sku": "P-NEW", "price": 1, "updated_at": "2026-01-02T00:00:00Z"})
        assert _poll_once(loaded, prefix) == 0
        out = capsys.readouterr().out
        assert "published 2" in out and "2026-01-01T00:08:00Z -> 2026-01-02T00:00:00Z" in out
        third = _published(amqp_url, prefix)
        assert sorted(e["subject"] for e in third) == ["P-003", "P-NEW"]
        ids = [e["id"] for e in first + second + third]
        assert len(ids) == len(set(ids))


@pytest.mark.parametrize("pagination", [
    {"style": "page", "size": 7},
    {"style": "offset", "size": 7},
    {"style": "next_link", "size": 7},
])
def test_poll_pagination_styles_fetch_every_record_once(
    amqp_url: str, prefix: str, make_config: Callable[..., LoadedConfig],
    pagination: dict[str, Any],
) -> None:
    api = ProductApi(23)
    style = {"next_link": "link"}.get(pagination["style"], pagination["style"])
    with Peer(api) as server:
        loaded = make_config([catch_all_route(prefix)], inbound=[_poller(
            prefix, f"{server.url}/products/{style}", pagination)])
        assert _poll_once(loaded, prefix) == 0
    subjects = [e["subject"] for e in _published(amqp_url, prefix)]
    assert sorted(subjects) == [p["sku"] for p in api.products]
    assert api.requests == 4  # 7 + 7 + 7 + 2 records


def test_poll_runs_in_the_daemon_on_start(
    amqp_url: str, prefix: str, make_config: Callable[..., LoadedConfig],
) -> None:
    api = ProductApi(12)
    with Peer(api) as server:
        section = _poller(prefix, f"{server.url}/products/cursor",
                          {"style": "cursor", "cursor_path": "next_cursor", "size": PAGE})
        section["run_on_start"] = True
        daemon = Daemon(make_config([catch_all_route(prefix)], inbound=[section]), Role.INGRESS)
        daemon.start()
        try:
            assert wait_until(
                lambda: queue_count(amqp_url, queue_name(f"{prefix}-r")) == 12, 10)
        finally:
            daemon.stop()


def test_poll_emit_page_publishes_one_envelope_per_price_list_page(
    amqp_url: str, prefix: str, make_config: Callable[..., LoadedConfig],
) -> None:
    items = [{"material": f"M-{n}", "description": f"Part {n}", "status": "ACTIVE",
              "list_price": f"{n}.50", "price_unit": 1, "changed_at": f"2026-02-0{1 + n // 4}"}
             for n in range(10)]

    async def price_list(request: Request, body: bytes) -> Response:
        start = int(request.query_params.get("cursor") or 0)
        since = request.query_params["changed_since"]
        rows = [i for i in items if i["changed_at"] >= since]
        more = start + 4 < len(rows)
        return json_response({"price_list": "PL-2026", "valid_from": "20260201",
                              "currency_code": "EUR", "items": rows[start:start + 4],
                              "next": str(start + 4) if more else None})

    with Peer(price_list) as server:
        section = {
            "type": "poll", "name": f"{prefix}-products", "schedule": "0 2 * * *",
            "system": prefix, "url": f"{server.url}/prices", "records": "items", "emit": "page",
            "pagination": {"style": "cursor", "cursor_path": "next", "size": 4},
            "watermark": {"param": "changed_since", "path": "changed_at",
                          "initial": "2026-01-01"},
            "derive": {"entity": {"value": "price_list"}, "action": {"value": "published"},
                       "subject": {"path": "price_list"}},
        }
        loaded = make_config([catch_all_route(prefix)], inbound=[section])
        assert _poll_once(loaded, prefix) == 0
        pages = _published(amqp_url, prefix)
        assert [len(p["data"]["items"]) for p in pages] == [4, 4, 2]
        assert {p["type"] for p in pages} == {f"{prefix}.price_list.published"}
        assert {p["subject"] for p in pages} == {"PL-2026"}
        # unchanged pages are not sent again; the watermark moved to the newest item
        assert _poll_once(loaded, prefix) == 0
        assert _published(amqp_url, prefix) == []
