"""Issue 16, must-show 4: an old event replayed from the DLQ after a newer one was applied is
dropped as ``stale`` by a route with ``stale: drop`` and written by one with ``stale: deliver``
(real RabbitMQ, real PostgreSQL, the daemon and ``silobridge dlq replay`` as processes)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import pytest
from starlette.requests import Request
from starlette.responses import Response

from middleware.scrape import parse
from tests.e2e.conftest import DaemonProcess
from tests.e2e.twoway_helpers import cleanup_routes, publish, update
from tests.integration.helpers import wait_until
from tests.integration.pg_helpers import pg_dsn  # noqa: F401  (a fixture)
from tests.integration.rest_helpers import Peer, json_response

pytestmark = pytest.mark.e2e


class Target:
    """Refuses (400) the first write of update 1 on each path, accepts everything else."""

    def __init__(self) -> None:
        self.accepted: list[tuple[str, int]] = []
        self.refused: set[str] = set()

    async def __call__(self, request: Request, body: bytes) -> Response:
        seq, path = json.loads(body)["seq"], request.url.path
        if seq == 1 and path not in self.refused:
            self.refused.add(path)
            return json_response({"error": "locked record"}, 400)
        self.accepted.append((path.split("/")[1], seq))
        return json_response({"ok": True})


def test_dlq_replay_of_an_old_event_is_stale_or_delivered_as_the_route_says(
    daemon_process: Callable[..., DaemonProcess], amqp_url: str, prefix: str,
    pg_dsn: str,  # noqa: F811
) -> None:
    drop, deliver = f"{prefix}-drop", f"{prefix}-deliver"
    target = Target()
    with cleanup_routes(amqp_url, [drop, deliver], 2), Peer(target) as server:
        routes = [{"name": name, "bind": [f"{prefix}crm.customer.*"],
                   "sync": {"stale": name.rsplit("-", 1)[1]},
                   "target": {"type": "rest", "method": "PUT",
                              "url": f"{server.url}/{name}/{{envelope.subject}}"}}
                  for name in (drop, deliver)]
        daemon = daemon_process(routes, store={"kind": "postgres", "dsn": pg_dsn})
        daemon.start()
        daemon.wait_ready()
        # Given: update 1 was dead-lettered (a permanent refusal), update 2 then applied
        publish(amqp_url, f"{prefix}crm.customer.updated", [update(f"{prefix}crm", "C-1", 1)])
        assert wait_until(lambda: len(target.refused) == 2, 20)
        publish(amqp_url, f"{prefix}crm.customer.updated", [update(f"{prefix}crm", "C-1", 2)])
        assert wait_until(lambda: len(target.accepted) == 2, 20)
        # When: an operator replays both routes' dead letters
        for route in (drop, deliver):
            done = subprocess.run(
                [sys.executable, "-m", "middleware", "dlq", "replay", route, "--all", "-c",
                 str(daemon.config)], capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stdout + done.stderr
        # Then: 'drop' counts it stale and does not write; 'deliver' writes it
        def stale(route: str) -> float:
            return parse(daemon.metrics()).sum("silobridge_messages_total", route=route,
                                               outcome="stale")

        assert wait_until(lambda: stale(drop) == 1, 20)
        assert wait_until(lambda: (deliver, 1) in target.accepted, 20)
        assert (drop, 1) not in target.accepted
        assert stale(deliver) == 0
        log = daemon.log.read_text()
        assert '"stale event not delivered"' in log and '"seq"' not in log
