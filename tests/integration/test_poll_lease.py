"""The poller under its store lease, in process, on the real PostgreSQL and SQLite.

``poll --once`` leaves a poller another replica holds alone; a run whose lease was taken over
half-way does not commit its watermark; a tick the previous holder did not finish (it died) is
run by the process that takes the lease over, also for one SQLite process restarted within the
lease time.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from middleware.cli import main
from middleware.config.loader import LoadedConfig
from middleware.config.models import StoreConfig
from middleware.daemon import Daemon, Role
from middleware.stores import open_stores
from tests.integration.helpers import wait_until
from tests.integration.pg_helpers import pg_dsn  # noqa: F401  (a fixture)
from tests.integration.rest_helpers import Peer, catch_all_route, json_response

pytestmark = pytest.mark.integration


class Api:
    """Ten products in pages of four; ``on_request`` runs before each answer."""

    def __init__(self) -> None:
        self.products = [{"sku": f"P-{n}", "updated_at": f"2026-01-01T00:00:{n:02}Z"}
                         for n in range(10)]
        self.on_request: Callable[[int], None] = lambda n: None
        self.requests = 0

    async def __call__(self, request: Request, body: bytes) -> Response:
        self.requests += 1
        self.on_request(self.requests)
        start = int(request.query_params.get("cursor") or 0)
        more = start + 4 < len(self.products)
        return json_response({"items": self.products[start:start + 4],
                              "next_cursor": str(start + 4) if more else None})


def _poller(prefix: str, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "poll", "name": f"{prefix}-products", "schedule": "0 2 * * *",
        "system": prefix, "url": url, "records": "items",
        "pagination": {"style": "cursor", "cursor_path": "next_cursor", "size": 4},
        "watermark": {"param": "updated_since", "path": "updated_at"},
        "derive": {"entity": {"value": "product"}, "action": {"value": "upserted"},
                   "subject": {"path": "sku"}}, **extra,
    }


def test_poll_once_leaves_a_poller_held_by_another_replica_alone(
    prefix: str, pg_dsn: str, make_config: Callable[..., LoadedConfig],  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    api = Api()
    with Peer(api) as server:
        loaded = make_config([catch_all_route(prefix)],
                             store={"kind": "postgres", "dsn": pg_dsn},
                             inbound=[_poller(prefix, f"{server.url}/p")])
        other = open_stores(loaded.config.store)
        try:
            # Given another replica holds the poller's lease
            assert other.lease.acquire(f"poll:{prefix}-products", "host-b:4711:x", ttl=60)
            # When an operator runs it by hand, nothing is fetched and the holder is named
            assert main(["poll", f"{prefix}-products", "--once", "-c", str(loaded.path)]) == 1
            assert "is run by host-b:4711:x" in capsys.readouterr().err
            assert api.requests == 0
            # Once released, the manual run goes ahead and gives the lease back afterwards
            other.lease.release(f"poll:{prefix}-products", "host-b:4711:x")
            assert main(["poll", f"{prefix}-products", "--once", "-c", str(loaded.path)]) == 0
            assert "published 10" in capsys.readouterr().out
            assert other.lease.holder(f"poll:{prefix}-products") is None
        finally:
            other.close()


def test_poll_run_whose_lease_was_taken_over_does_not_commit_its_watermark(
    prefix: str, pg_dsn: str, make_config: Callable[..., LoadedConfig],  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    api = Api()
    with Peer(api) as server:
        loaded = make_config([catch_all_route(prefix)],
                             store={"kind": "postgres", "dsn": pg_dsn},
                             inbound=[_poller(prefix, f"{server.url}/p")])
        other = open_stores(loaded.config.store)
        name = f"poll:{prefix}-products"

        def steal(request: int) -> None:
            if request == 2:  # the run lost its lease while fetching page two (a long pause)
                other.lease.release(name, _holder_of(name))
                assert other.lease.acquire(name, "host-b:4711:x", ttl=60)

        def _holder_of(lease: str) -> str:
            held = other.lease.holder(lease)
            assert held is not None
            return held[0]

        api.on_request = steal
        try:
            assert main(["poll", f"{prefix}-products", "--once", "-c", str(loaded.path)]) == 1
            assert "lost its lease" in capsys.readouterr().err
            assert other.state.get(f"poll:{prefix}-products:watermark") is None
            assert other.lease.holder(name) == ("host-b:4711:x", pytest.approx(60, abs=5))
        finally:
            other.close()


def _renewed(loaded: LoadedConfig, lease: str, times: int) -> bool:
    """Whether the lease was seen renewed ``times`` times (its time left went up), within 10 s.

    Evidence, where a pause was a hope: a run per renewal would have started by then.
    """
    watch = open_stores(StoreConfig.model_validate(loaded.config.store.model_dump()))
    left: list[float] = []

    def renewals() -> int:
        held = watch.lease.holder(lease)
        left.append(held[1] if held else 0.0)
        return sum(later > earlier for earlier, later in itertools.pairwise(left))

    try:
        return wait_until(lambda: renewals() >= times, 10, step=0.05)
    finally:
        watch.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_poll_tick_the_dead_holder_left_unfinished_is_run_by_the_next_holder(
    prefix: str, make_config: Callable[..., LoadedConfig], request: pytest.FixtureRequest,
    kind: str,
) -> None:
    api = Api()
    store: dict[str, Any] = ({"kind": "postgres", "dsn": request.getfixturevalue("pg_dsn")}
                             if kind == "postgres" else {})
    with Peer(api) as server:
        loaded = make_config([catch_all_route(prefix)], **({"store": store} if store else {}),
                             inbound=[_poller(prefix, f"{server.url}/p",
                                              lease={"time": 1.5, "renew_interval": 0.3})])
        # Given a process that held the lease died during a tick: its lease row lingers
        # and the last tick recorded as handled is an old one (daily schedule: none today)
        before = open_stores(StoreConfig.model_validate(loaded.config.store.model_dump()))
        assert before.lease.acquire(f"poll:{prefix}-products", "host-a:1:dead", ttl=1.0)
        before.state.put(f"poll:{prefix}-products:tick", "0.0")
        before.close()
        daemon = Daemon(loaded, Role.INGRESS)
        daemon.start()
        try:
            # When this process takes the expired lease over, it runs the missed tick at once
            assert wait_until(lambda: api.requests >= 3, 10), api.requests
            assert _renewed(loaded, f"poll:{prefix}-products", times=3)
            assert api.requests == 3  # one run of three pages, not one per renewal
        finally:
            daemon.stop()
