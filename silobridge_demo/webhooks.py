"""Signed webhooks as the demo peers send them, and the outbox that reports their changes.

The demo config checks every webhook the same way (HMAC-SHA256 over ``<unix time>.<body>``,
``X-Signature: sha256=<hex>``, ``X-Event-Id`` as the envelope id, so a resend is deduplicated).
A webhook refused with 429, 5xx or no answer at all (the ingress is starting, the broker is
down) is sent again, so what a peer counts as sent is what the ingress confirmed.

``Outbox`` is how both demo systems report their own changes, like a CRM's or an ERP's change
notifications: one thread posts them in the order they happened, so silobridge sees the changes
of one record in order, and the system that made a change never waits for silobridge.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

__all__ = ["DEFAULT_SECRET", "SECRET_ENV", "Outbox", "deliver", "demo_secret", "sign"]

SECRET_ENV = "SILOBRIDGE_DEMO_WEBHOOK_SECRET"
DEFAULT_SECRET = "silobridge-demo-secret"
"""Used when SECRET_ENV is unset: a demo value, never a production secret."""


def demo_secret() -> str:
    return os.environ.get(SECRET_ENV) or DEFAULT_SECRET


def sign(secret: bytes, body: bytes, now: float) -> dict[str, str]:
    """The headers the demo config checks: HMAC-SHA256 over ``<unix time>.<body>``."""
    stamp = str(int(now))
    digest = hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Timestamp": stamp, "X-Signature": f"sha256={digest}"}


def deliver(client: httpx.Client, url: str, body: bytes, headers: dict[str, str],
            secret: bytes, halted: Callable[[float], bool]) -> int:
    """POST until the ingress confirms or refuses for good; the final status, 0 when halted.

    Signed anew for every try, so a webhook that waited for the ingress is not refused as
    stale. ``halted(seconds)`` waits between tries and says whether to give up.
    """
    while True:
        try:
            status = client.post(url, content=body, headers={
                "Content-Type": "application/json", **headers,
                **sign(secret, body, time.time())}).status_code
        except httpx.HTTPError:
            status = 0
        if status != 0 and (status < 300 or (400 <= status < 500 and status != 429)):
            return status
        if halted(1.0):
            return 0


@dataclass(frozen=True)
class _Change:
    payload: dict[str, Any]
    action: str
    kind: str
    id: str


class Outbox:
    """A system's change events, posted in order to ``<ingress><path>`` by one thread.

    ``put`` queues a change (the action goes in ``action_header``); ``sent`` counts what the
    ingress confirmed per ``kind`` (the caller's label: a user's edit, silobridge's write).
    """

    def __init__(self, ingress_url: str, path: str, action_header: str, secret: str,
                 name: str) -> None:
        self._url = ingress_url.rstrip("/") + path
        self._action_header = action_header
        self._secret = secret.encode()
        self._changes: queue.SimpleQueue[_Change | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._open = 0  # queued and not yet confirmed (or refused)
        self._sent: Counter[str] = Counter()
        self.refused = 0
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._post_loop, name=f"{name}-changes",
                                        daemon=True)

    def start(self) -> Outbox:
        self._thread.start()
        return self

    def put(self, payload: dict[str, Any], action: str, kind: str) -> None:
        with self._lock:
            self._open += 1
        self._changes.put(_Change(payload, action, kind, str(uuid.uuid4())))

    @property
    def idle(self) -> bool:
        """Nothing queued or being sent."""
        with self._lock:
            return self._open == 0

    def sent(self, kind: str) -> int:
        with self._lock:
            return self._sent[kind]

    def close(self) -> None:
        self._halt.set()
        self._changes.put(None)
        self._thread.join(15)

    def _post_loop(self) -> None:
        with httpx.Client(timeout=10) as client:
            while (change := self._changes.get()) is not None:
                status = deliver(client, self._url, orjson.dumps(change.payload),
                                 {"X-Event-Id": change.id, self._action_header: change.action},
                                 self._secret, self._halt.wait)
                with self._lock:
                    self._open -= 1
                    if 200 <= status < 300:
                        self._sent[change.kind] += 1
                    elif status:
                        self.refused += 1
