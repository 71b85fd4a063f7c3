"""Helpers for SOAP unit tests: an in-memory publisher, endpoint contexts, real-world files."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from middleware.adapter import AdapterContext
from middleware.config.models import BrokerConfig, IngressConfig, StoreConfig
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
    """Confirms every publish at once, or nacks those ``fail`` selects; records what it got."""

    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []
        self.fail: Callable[[dict[str, Any]], bool] = lambda _event: False
        self._lock = threading.Lock()

    def publish(self, exchange: str, routing_key: str, body: bytes, properties: Any,
                **_options: Any) -> Future[None]:
        event = orjson.loads(body)
        future: Future[None] = Future()
        if self.fail(event):
            future.set_exception(PublishNacked("nacked by the test"))
        else:
            with self._lock:
                self.published.append(event)
            future.set_result(None)
        return future

    @property
    def ids(self) -> list[str]:
        with self._lock:
            return [event["id"] for event in self.published]


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
