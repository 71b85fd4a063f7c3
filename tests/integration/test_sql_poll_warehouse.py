"""The daily price list into the warehouse: a poller, the real broker, a worker, a real database.

A loopback API serves 10,000 prices in pages; ``silobridge poll --once`` publishes them; a worker
maps them and the SQL target upserts them in batches. Run again with every price changed, the
table still has 10,000 rows, now with the new prices and the lineage of the second run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from middleware.cli import main
from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon
from tests.integration.helpers import wait_until
from tests.integration.rest_helpers import Peer, json_response
from tests.integration.sql_helpers import Warehouse, warehouse

__all__ = ["warehouse"]

pytestmark = pytest.mark.integration

RECORDS = 10_000

MAPPING = """\
mapping: price-list-to-warehouse
source: {system: erp}
target: {system: dwh}
fields:
  sku: sku
  price: {from: list_price}
  currency: {from: currency, transform: [upper]}
  valid_from: {from: updated_at}
"""


class PriceApi:
    """Prices changed since ``updated_since``, in pages of ``limit`` by offset."""

    def __init__(self) -> None:
        self.prices = [{"sku": f"SKU-{n:05}", "list_price": n / 100, "currency": "cny",
                        "updated_at": "2026-03-01T02:00:00Z"} for n in range(RECORDS)]

    def reprice(self) -> None:
        for price in self.prices:
            price["list_price"] = round(price["list_price"] * 2 + 1, 2)  # type: ignore[operator]
            price["updated_at"] = "2026-03-02T02:00:00Z"

    async def __call__(self, request: Request, body: bytes) -> Response:
        query = request.query_params
        since = query.get("updated_since", "")
        rows = [p for p in self.prices if p["updated_at"] >= since]
        offset, limit = int(query.get("offset", 0)), int(query.get("limit", 100))
        return json_response({"items": rows[offset:offset + limit]})


def _config(prefix: str, url: str, table: str, tmp_path: Path) -> tuple[list[dict[str, Any]],
                                                                       dict[str, Any]]:
    (tmp_path / "prices.yaml").write_text(MAPPING)
    route = {"name": f"{prefix}-prices", "bind": [f"{prefix}.price.#"], "mapping": "prices.yaml",
             "target": {"type": "sql", "dsn_env": "SB_TEST_WAREHOUSE_DSN", "table": table,
                        "key": ["sku"], "create": True,
                        "columns": {"sku": "string", "price": "numeric", "currency": "string",
                                    "valid_from": "timestamp"},
                        "batch": {"max_rows": 500, "max_wait_ms": 50}}}
    poller = {"type": "poll", "name": f"{prefix}-prices", "schedule": "0 2 * * *",
              "system": prefix, "url": url, "records": "items",
              "pagination": {"style": "offset", "size": 1000},
              "watermark": {"param": "updated_since", "path": "updated_at"},
              "derive": {"entity": {"value": "price"}, "action": {"value": "upserted"},
                         "subject": {"path": "sku"}, "time": {"path": "updated_at"}}}
    return [route], {"inbound": [poller]}


def test_price_list_lands_in_batches_updates_on_rerun_and_keeps_lineage(
    warehouse: Warehouse, prefix: str, tmp_path: Path,
    make_config: Callable[..., LoadedConfig], run_daemon: Callable[[LoadedConfig], Daemon],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SB_TEST_WAREHOUSE_DSN", warehouse.dsn)
    table = warehouse.table("price_list")
    api = PriceApi()
    with Peer(api) as server:
        routes, sections = _config(prefix, f"{server.url}/prices", table, tmp_path)
        loaded = make_config(routes, **sections)
        daemon = run_daemon(loaded)
        poll = ["poll", f"{prefix}-prices", "--once", "-c", str(loaded.path)]

        def landed(where: str) -> bool:
            return warehouse.query(f"SELECT count(*) FROM {table} WHERE {where}") == [(RECORDS,)]

        # Given the first daily run
        assert main(poll) == 0
        assert wait_until(lambda: landed("currency = 'CNY'"), 120, step=0.5)
        first = dict(warehouse.query(f"SELECT sku, sb_envelope_id FROM {table}"))
        # When the next day's run changes every price
        api.reprice()
        assert main(poll) == 0
        assert wait_until(lambda: landed("sb_event_time >= '2026-03-02'"), 120, step=0.5)
        daemon.stop()
    # Then the table holds each product once, with the new price
    assert warehouse.query(f"SELECT count(*), count(DISTINCT sku) FROM {table}") == [
        (RECORDS, RECORDS)]
    assert warehouse.query(f"SELECT price FROM {table} WHERE sku = 'SKU-00250'") == [
        (pytest.approx(6.0),)]
    # And every row carries the lineage of the run that last wrote it
    lineage = warehouse.query(
        "SELECT count(DISTINCT sb_envelope_id), min(sb_source), min(sb_event_type), "
        "min(sb_route), min(sb_mapping), count(DISTINCT sb_mapping_version), "
        f"min(length(sb_mapping_version)), count(sb_delivered_at) FROM {table}")
    assert lineage == [(RECORDS, f"{prefix}/{prefix}-prices", f"{prefix}.price.upserted",
                        f"{prefix}-prices", "price-list-to-warehouse", 1, 16, RECORDS)]
    second = dict(warehouse.query(f"SELECT sku, sb_envelope_id FROM {table}"))
    assert all(second[sku] != first[sku] for sku in first)  # rewritten by the second run
    event_time = warehouse.query(f"SELECT sb_event_time FROM {table} WHERE sku = 'SKU-00001'")
    assert str(event_time[0][0]).startswith("2026-03-02 02:00:00")
    # And rows were written in batches: the rows of one statement share their sb_delivered_at
    statements = warehouse.query(f"SELECT count(DISTINCT sb_delivered_at) FROM {table}")[0][0]
    assert statements <= RECORDS / 20, statements
