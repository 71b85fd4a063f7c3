"""Integration fixtures: a config for a test route on the real broker, torn down afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
import yaml

from middleware.broker.topology import dlq_name, queue_name, retry_name
from middleware.config.loader import LoadedConfig, load_config
from middleware.daemon import Daemon, Role
from tests.integration.helpers import wait_until
from tests.integration.pg_helpers import opener, pg_dsn  # noqa: F401  (fixtures for every test here)


@pytest.fixture
def make_config(
    amqp_url: str, prefix: str, tmp_path: Path
) -> Iterator[Callable[..., LoadedConfig]]:
    """Write a config with one route per call and return it loaded; delete its queues after."""
    declared: list[str] = []

    def make(routes: list[dict[str, Any]], **sections: Any) -> LoadedConfig:
        document = {
            "broker": {"url": amqp_url, "prefetch": 200, "publish_timeout": 5},
            "ops": {"port": 0},
            "ingress": {"port": 0},
            "store": {"path": str(tmp_path / "store.db")},
            "retry": {"attempts": 3, "initial_delay": 0.3, "multiplier": 2},
            "routes": routes,
            **sections,
        }
        path = tmp_path / f"config-{len(declared)}.yaml"
        path.write_text(yaml.safe_dump(document))
        loaded = load_config(path)
        for route in loaded.config.routes:
            tiers = len(loaded.config.retry_for(route).delays())
            declared.extend([queue_name(route.name), dlq_name(route.name)])
            declared.extend(retry_name(route.name, n) for n in range(1, tiers + 1))
        return loaded

    yield make
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    for name in [*declared, f"{prefix}.out"]:
        channel.queue_delete(name)
    channel.exchange_delete(f"{prefix}.out")
    connection.close()


@pytest.fixture
def run_daemon() -> Iterator[Callable[[LoadedConfig], Daemon]]:
    """Start an in-process worker daemon for a config; ready when returned, stopped after."""
    started: list[Daemon] = []

    def run(loaded: LoadedConfig) -> Daemon:
        daemon = Daemon(loaded, Role.WORKER)
        daemon.start()
        started.append(daemon)
        assert wait_until(lambda: all(daemon.readiness().values()), 10)
        return daemon

    yield run
    for daemon in started:
        if not daemon.stopped.is_set():
            daemon.stop()
