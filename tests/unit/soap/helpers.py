"""Helpers for SOAP unit tests: a publisher on the in-memory broker, endpoint contexts and
real-world files."""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from middleware.adapter import AdapterContext
from middleware.broker.memory import MemoryBroker
from middleware.broker.properties import Properties
from middleware.broker.topology import topology_for
from middleware.config.models import BrokerConfig, Config, IngressConfig, StoreConfig
from middleware.errors import PublishNacked
from middleware.ingress import Ingress
from middleware.stores import Stores, open_stores

_REPO = Path(__file__).resolve().parents[3]
# beside the checkout (/work/main -> /work/shared) or beside a worktree's parent
# (/work/wt/<name> -> /work/shared)
REALWORLD = next((path for path in (_REPO / ".." / "shared" / "realworld",
                                    _REPO / ".." / ".." / "shared" / "realworld")
                  if path.is_dir()), _REPO / ".." / "shared" / "realworld")
EXAMPLES = _REPO / "mappings" / "examples"


def realworld(relative: str) -> Path:
    """A vendor artefact, byte for byte; the test is skipped where the files are absent."""
    path = REALWORLD / relative
    if not path.is_file():
        pytest.skip(f"real-world artefact {path} not present")
    return path


class MemoryPublisher:
    """The in-memory broker's publisher on the events topology (routing, confirms, returns as
    on RabbitMQ), nacking the events ``fail`` selects; ``published`` is what it confirmed."""

    def __init__(self) -> None:
        self._publisher = _events_broker().publisher(name="soap-test")
        self._publisher.start()
        self.fail: Callable[[dict[str, Any]], bool] = lambda _event: False

    def publish(self, exchange: str, routing_key: str, body: bytes, properties: Properties,
                **options: Any) -> Future[Any]:
        if self.fail(orjson.loads(body)):
            future: Future[Any] = Future()
            future.set_exception(PublishNacked("nacked by the test"))
            return future
        return self._publisher.publish(exchange, routing_key, body, properties, **options)

    @property
    def published(self) -> list[dict[str, Any]]:
        return [orjson.loads(body) for _exchange, _key, body, _props in self._publisher.published]

    @property
    def ids(self) -> list[str]:
        return [event["id"] for event in self.published]


@functools.cache
def _events_broker() -> MemoryBroker:
    """One memory broker for the session: the events exchange, its alternate exchange and the
    unrouted queue (what ``topology_for`` declares for a config without routes)."""
    return MemoryBroker(topology_for(Config()))


def endpoint_client(
    adapter: Any, tmp_path: Path, publisher: MemoryPublisher, base_dir: Path | None = None
) -> tuple[TestClient, Stores]:
    """Start ``adapter`` on an ingress that is never bound; return a client for its routes."""
    stores = open_stores(StoreConfig(path=str(tmp_path / "store.db")))
    ingress = Ingress(IngressConfig(port=0))
    context = AdapterContext(publisher, BrokerConfig(publish_timeout=2), stores,  # type: ignore[arg-type]
                             base_dir or tmp_path, ingress)
    adapter.start(context)
    return TestClient(Starlette(routes=ingress.routes)), stores


def soap11(body: str) -> bytes:
    return (f'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
            f"<soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>").encode()


TEXT_XML = {"Content-Type": "text/xml; charset=utf-8"}
