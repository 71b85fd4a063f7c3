"""``/readyz`` follows the broker: 503 (naming the failed checks) while RabbitMQ is stopped, 200
again once it is back, while ``/healthz`` keeps answering 200 (the process is alive; restarting
it would not help). ``silobridge_consumers`` follows too, so the no-consumer alert can fire.
The outage lasts only as long as the daemon needs to notice it."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from middleware.scrape import scrape
from tests.e2e.conftest import DaemonProcess
from tests.integration.broker_control import require_rabbitmqctl, restored, stop_broker
from tests.integration.helpers import wait_until

pytestmark = pytest.mark.e2e


def test_observability_readyz_is_503_while_the_broker_is_stopped_and_200_after(
    amqp_url: str, prefix: str, daemon_process: Callable[..., DaemonProcess],
) -> None:
    require_rabbitmqctl()
    daemon = daemon_process(
        [{"name": f"{prefix}-r", "bind": [f"{prefix}.#"],
          "target": {"type": "amqp", "exchange": f"{prefix}.out", "routing_key": "x"}}],
        broker={"url": amqp_url, "reconnect_max_delay": 1},
    )
    daemon.start()
    daemon.wait_ready()
    ops = f"http://127.0.0.1:{daemon.ops_port}"

    def readyz() -> httpx.Response:
        return httpx.get(f"{ops}/readyz", timeout=2)

    assert readyz().status_code == 200
    with restored():
        # When RabbitMQ stops
        stop_broker()
        # Then the daemon turns unready and says why, while staying alive
        assert wait_until(lambda: readyz().status_code == 503, 15)
        checks = readyz().json()["checks"]
        assert checks["broker_publish"] is False
        consumers = scrape(f"{ops}/metrics")
        assert consumers is not None
        assert consumers.sum("silobridge_consumers", route=f"{prefix}-r") == 0
        assert httpx.get(f"{ops}/healthz", timeout=2).status_code == 200
    # When it is back (restored() started it and waited for it), the daemon is ready again
    assert wait_until(lambda: readyz().status_code == 200, 30), readyz().text
    assert readyz().json()["checks"]["consumers"] is True
    # And the metrics tell the same story: reconnected, every connection up again
    metrics = scrape(f"{ops}/metrics")
    assert metrics is not None and metrics.sum("silobridge_reconnects_total") >= 1
    connected = [v for (name, _), v in metrics.samples.items()
                 if name == "silobridge_broker_connected"]
    assert connected and set(connected) == {1.0}
    assert metrics.sum("silobridge_consumers", route=f"{prefix}-r") == 1
