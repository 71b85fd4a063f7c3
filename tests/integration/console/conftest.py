"""A running daemon with the console on its own port, two scripted routes on the real broker,
one user per role (plus a route-scoped one) and dead letters carrying personal data."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from middleware.broker.ingest import publish_envelopes
from middleware.broker.rabbitmq.publisher import Publisher
from middleware.broker.topology import dlq_name
from middleware.config.loader import LoadedConfig
from middleware.config.models import BrokerConfig
from middleware.console.auth import Authenticator, hash_password
from middleware.daemon import Daemon
from middleware.envelope import Envelope
from tests.integration.helpers import ScriptedTarget, queue_count, wait_until

PASSWORD = "a long test passphrase"


@functools.cache
def password_hash() -> str:
    """argon2 is slow on purpose (seconds on a busy 2-core box): hash the test password once."""
    return hash_password(PASSWORD)
PERSONAL = {"email": "ana.example@example.org", "name": "Ana Example", "phone": "+49 170 1234567"}


@dataclass
class Console:
    url: str
    daemon: Daemon
    route_a: str
    route_b: str
    target: ScriptedTarget
    tokens: dict[str, str]
    """A bearer token per user name: viewer, operator, integrator, admin, scoped."""
    amqp_url: str
    prefix: str

    def client(self, user: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def session(self, user: str) -> tuple[httpx.Client, str]:
        client = httpx.Client(base_url=self.url, timeout=30)
        answer = client.post("/api/v1/login", json={"name": user, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        return client, answer.json()["csrf_token"]

    def accept_all(self) -> None:
        """The target accepts every delivery from now on."""
        self.target.fail_all = 0
        self.target.failures.clear()

    def dead_letter(self, count: int = 1, **data: Any) -> list[str]:
        """Publish ``count`` events the target refuses for good: they end in route a's DLQ."""
        before = queue_count(self.amqp_url, dlq_name(self.route_a))
        self.target.fail_all, self.target.retryable = 1_000_000, False
        envelopes = [Envelope.new(source="crm/test", type=f"{self.prefix}.customer.updated",
                                  subject=f"C-{n}", data={**PERSONAL, "n": n, **data})
                     for n in range(count)]
        publisher = Publisher(BrokerConfig(url=self.amqp_url))
        assert publisher.start(wait=10)
        try:
            publish_envelopes(publisher, envelopes, timeout=30)
        finally:
            publisher.stop()
        assert wait_until(lambda: queue_count(self.amqp_url, dlq_name(self.route_a))
                          >= before + count, 20)
        return [envelope.id for envelope in envelopes]


@pytest.fixture
def console(
    amqp_url: str, prefix: str, make_config: Callable[..., LoadedConfig],
    run_daemon: Callable[[LoadedConfig], Daemon],
) -> Iterator[Console]:
    route_a, route_b = f"{prefix}-a", f"{prefix}-b"
    loaded = make_config(
        [{"name": route_a, "bind": [f"{prefix}.customer.*"],
          "target": {"type": "scripted", "name": prefix}},
         {"name": route_b, "bind": [f"{prefix}.order.*"],
          "target": {"type": "scripted", "name": f"{prefix}-b"}}],
        console={"enabled": True, "port": 0, "secure_cookies": False},
    )
    daemon = run_daemon(loaded)
    assert daemon.console is not None
    store = daemon.console.store
    auth = Authenticator(store, loaded.config.console)
    tokens = {}
    for name, role, routes in [("viewer", "viewer", []), ("operator", "operator", []),
                               ("integrator", "integrator", []), ("admin", "admin", []),
                               ("scoped", "operator", [route_a])]:
        store.add_user(name, password_hash(), role, routes)
        tokens[name] = auth.issue_token(name, "test")
    yield Console(f"http://127.0.0.1:{daemon.console.port}", daemon, route_a, route_b,
                  ScriptedTarget.instances[prefix], tokens, amqp_url, prefix)
