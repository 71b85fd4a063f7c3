"""The demo CRM: sends signed webhooks for new customers and won orders, receives callbacks.

It plays the CRM of the demo config (``config/demo.yaml``): every event is a JSON POST to the
ingress, signed the way that config checks (HMAC-SHA256 over ``<unix time>.<body>``,
``X-Signature: sha256=<hex>``), with ``X-Event-Id`` as the envelope id so a resend is
deduplicated. An event refused with 429, 5xx or no answer at all (the ingress is starting, the
broker is down) is sent again, so what the CRM reports as sent is what the ingress confirmed.
With ``bad_every`` it makes every n-th event one the ERP side must refuse (a customer from an
unknown country, an order in an unknown currency), so the DLQ has something to show.

Its own HTTP server takes status callbacks (``POST /callbacks/<name>``) and reports what it sent
and received at ``GET /state``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import random
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from middleware.http import ServerThread

__all__ = ["DEFAULT_SECRET", "SECRET_ENV", "CrmEvents", "DemoCrm", "Event", "Sent", "demo_secret",
           "sign"]

SECRET_ENV = "SILOBRIDGE_DEMO_WEBHOOK_SECRET"
DEFAULT_SECRET = "silobridge-demo-secret"
"""Used when SECRET_ENV is unset: a demo value, never a production secret."""

_COUNTRIES = ("Germany", "Austria", "Switzerland", "France", "China", "United States")
_PRODUCTS = (("SKU-100", "19.90"), ("SKU-200", "249.00"), ("SKU-300", "0.045"),
             ("SKU-400", "7.50"))


def demo_secret() -> str:
    return os.environ.get(SECRET_ENV) or DEFAULT_SECRET


@dataclass
class Sent:
    """What the ingress confirmed (2xx), by kind; ``bad_*`` are the deliberately bad ones."""

    customers: int = 0
    orders: int = 0
    bad_customers: int = 0
    bad_orders: int = 0
    refused: int = 0
    """Events the ingress refused for good (4xx other than 429): none, unless misconfigured."""
    callbacks: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.customers + self.orders


@dataclass(frozen=True)
class Event:
    path: str
    kind: str  # "customer" or "order"
    payload: dict[str, Any]
    bad: bool
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


class CrmEvents:
    """New customers first, then two won orders per new customer, at random but reproducibly."""

    def __init__(self, seed: int = 1, bad_every: int = 0) -> None:
        self._random = random.Random(seed)
        self._bad_every = bad_every
        self._numbers = itertools.count(10001)
        self._count = itertools.count(1)
        self._customers: list[dict[str, Any]] = []
        self._run = uuid.uuid4().hex[:6].upper()

    def next(self) -> Event:
        n = next(self._count)
        bad = self._bad_every > 0 and n % self._bad_every == 0
        if len(self._customers) < 3 or self._random.random() < 1 / 3:
            return self._customer(bad)
        return self._order(n, bad)

    def accepted(self, event: Event) -> None:
        """A customer the ingress confirmed may now receive orders."""
        if event.kind == "customer" and not event.bad:
            self._customers.append(event.payload)

    def _customer(self, bad: bool) -> Event:
        number = next(self._numbers)
        country = "Atlantis" if bad else self._random.choice(_COUNTRIES)
        payload = {
            "customer_no": f"C-{number}", "name": f"Demo Customer {number} GmbH",
            "email": f"buyer{number}@customer.example", "country": country,
            "currency": "eur", "tier": self._random.choice(("gold", "silver", "bronze")),
            "status": "active", "created_at": _now(),
        }
        return Event("/webhooks/crm/customers", "customer", payload, bad)

    def _order(self, n: int, bad: bool) -> Event:
        customer = self._random.choice(self._customers)
        items = [{"line": line, "product_code": sku, "quantity": self._random.randint(1, 20),
                  "unit_price": price}
                 for line, (sku, price) in enumerate(
                     self._random.sample(_PRODUCTS, self._random.randint(1, 3)), start=1)]
        payload = {
            "opportunity_id": f"OPP-{self._run}-{n:06d}", "stage": "won",
            "customer": {"customer_no": customer["customer_no"], "name": customer["name"],
                         "tier": customer["tier"]},
            "closed_at": _now(), "currency": "xxx" if bad else "eur", "items": items,
        }
        return Event("/webhooks/crm/orders", "order", payload, bad)


def sign(secret: bytes, body: bytes, now: float) -> dict[str, str]:
    """The headers the demo config checks: HMAC-SHA256 over ``<unix time>.<body>``."""
    stamp = str(int(now))
    digest = hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Timestamp": stamp, "X-Signature": f"sha256={digest}"}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class DemoCrm:
    """Sends ``rate`` events per second to ``ingress_url`` and serves callbacks on host:port."""

    def __init__(self, ingress_url: str, host: str = "127.0.0.1", port: int = 8091,
                 rate: float = 2.0, bad_every: int = 0, secret: str | None = None) -> None:
        self.sent = Sent()
        self._ingress = ingress_url.rstrip("/")
        self._rate = rate
        self._secret = (secret or demo_secret()).encode()
        self._events = CrmEvents(bad_every=bad_every)
        self._lock = threading.Lock()
        self._callback_keys: dict[str, set[str]] = {}
        self._halt = threading.Event()
        self._sender = threading.Thread(target=self._send_loop, name="demo-crm-send", daemon=True)
        self.server = ServerThread(self._app(), host, port, "demo-crm")

    def start(self) -> DemoCrm:
        self.server.start_and_wait()
        self._sender.start()
        return self

    def stop_sending(self) -> None:
        """Stop after the event in progress; returns once nothing is being sent."""
        self._halt.set()
        self._sender.join(15)

    def stop(self) -> None:
        self.stop_sending()
        self.server.stop()

    def counts(self) -> Sent:
        with self._lock:
            return Sent(**asdict(self.sent))  # asdict copies the callbacks dict too

    def _send_loop(self) -> None:
        interval, due = 1.0 / self._rate, time.monotonic()
        with httpx.Client(timeout=10) as client:
            while not self._halt.is_set():
                event = self._events.next()
                self._deliver(client, event)
                due = max(due + interval, time.monotonic() - 1.0)  # no burst after a stall
                self._halt.wait(max(0.0, due - time.monotonic()))

    def _deliver(self, client: httpx.Client, event: Event) -> None:
        """Send until the ingress confirms or refuses for good; give up only when halted."""
        body = orjson.dumps(event.payload)
        action = "create" if event.kind == "customer" else "won"
        while True:
            headers = {"Content-Type": "application/json", "X-Event-Id": event.id,
                       "X-CRM-Event": action, **sign(self._secret, body, time.time())}
            try:
                status = client.post(self._ingress + event.path, content=body,
                                     headers=headers).status_code
            except httpx.HTTPError:
                status = 0
            if status < 300 and status != 0:
                self._record(event)
                return
            if 400 <= status < 500 and status != 429:
                with self._lock:
                    self.sent.refused += 1
                return
            if self._halt.wait(1.0):
                return

    def _record(self, event: Event) -> None:
        self._events.accepted(event)
        with self._lock:
            if event.kind == "customer":
                self.sent.customers += 1
                self.sent.bad_customers += event.bad
            else:
                self.sent.orders += 1
                self.sent.bad_orders += event.bad

    def _app(self) -> Starlette:
        async def callback(request: Request) -> Response:
            await request.body()
            name = request.path_params["name"]
            # one per message: a callback repeated after a lost answer has the same key
            key = request.headers.get("idempotency-key") or str(uuid.uuid4())  # no key: counts
            with self._lock:
                keys = self._callback_keys.setdefault(name, set())
                keys.add(key)
                self.sent.callbacks[name] = len(keys)
            return Response(status_code=204)

        async def state(_request: Request) -> Response:
            counts = self.counts()
            return JSONResponse({**asdict(counts), "total": counts.total})

        return Starlette(routes=[Route("/callbacks/{name}", callback, methods=["POST"]),
                                 Route("/state", state)])
