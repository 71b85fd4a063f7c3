"""The demo CRM: sends signed webhooks for new customers and won orders, receives callbacks,
and keeps its customers in sync with the ERP both ways.

It plays the CRM of the demo config (``config/demo.yaml``): every event is a signed JSON POST to
the ingress (``webhooks``), sent again until the ingress confirms it. With ``bad_every`` it makes
every n-th event one the ERP side must refuse (a customer from an unknown country, an order in an
unknown currency), so the DLQ has something to show.

Like a real CRM it reports every change of a customer as a webhook (``X-CRM-Event: update``,
the whole record): the edits its users make (``edit``) and the writes it receives from
silobridge (``PATCH /api/customers/<customer_no>``, merged into the record), which are the echoes
silobridge must recognise. It counts those writes, and the ones that changed nothing: a write
that changes nothing is what an echo written back looks like.

Its own HTTP server also takes status callbacks (``POST /callbacks/<name>``) and reports what it
sent and received at ``GET /state``.
"""

from __future__ import annotations

import itertools
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
from silobridge_demo.webhooks import DEFAULT_SECRET, SECRET_ENV, Outbox, deliver, demo_secret, sign

__all__ = ["DEFAULT_SECRET", "SECRET_ENV", "CrmEvents", "DemoCrm", "Event", "Sent", "demo_secret",
           "now_iso", "sign"]

CUSTOMERS = "/webhooks/crm/customers"

_COUNTRIES = ("Germany", "Austria", "Switzerland", "France", "China", "United States")
_PRODUCTS = (("SKU-100", "19.90"), ("SKU-200", "249.00"), ("SKU-300", "0.045"),
             ("SKU-400", "7.50"))


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
    edits: int = 0
    """Customer edits of the CRM's users that the ingress confirmed."""
    writes: int = 0
    """Writes silobridge made into CRM customers (a resend with the same key counts once)."""
    idle_writes: int = 0
    """Of those, writes that changed nothing: echoes written back."""

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
            "status": "active", "created_at": _now(), "updated_at": now_iso(),
        }
        return Event(CUSTOMERS, "customer", payload, bad)

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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def now_iso() -> str:
    """A change time to the microsecond: the version two-way sync orders a record's changes by
    (two changes of one record within the same second must not look equal)."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class DemoCrm:
    """Sends ``rate`` events per second to ``ingress_url`` and serves callbacks and customer
    writes on host:port; reports every change of a customer back to the ingress."""

    def __init__(self, ingress_url: str, host: str = "127.0.0.1", port: int = 8091,
                 rate: float = 2.0, bad_every: int = 0, secret: str | None = None) -> None:
        self.sent = Sent()
        self._ingress = ingress_url.rstrip("/")
        self._rate = rate
        self._secret = (secret or demo_secret()).encode()
        self._events = CrmEvents(bad_every=bad_every)
        self._lock = threading.Lock()
        self._callback_keys: dict[str, set[str]] = {}
        self._write_keys: set[str] = set()
        self._customers: dict[str, dict[str, Any]] = {}
        """Customers the ingress confirmed (the bad ones left out), as the CRM holds them."""
        self._touched: dict[str, float] = {}
        """customer_no -> when it last changed here (monotonic): an edit or a write."""
        self._halt = threading.Event()
        self._sender = threading.Thread(target=self._send_loop, name="demo-crm-send", daemon=True)
        self.changes = Outbox(self._ingress, CUSTOMERS, "X-CRM-Event", self._secret.decode(),
                              "demo-crm")
        self.server = ServerThread(self._app(), host, port, "demo-crm")

    def start(self) -> DemoCrm:
        self.server.start_and_wait()
        self.changes.start()
        self._sender.start()
        return self

    def stop_sending(self) -> None:
        """Stop after the event in progress; returns once nothing is being sent."""
        self._halt.set()
        self._sender.join(15)

    def stop(self) -> None:
        self.stop_sending()
        self.changes.close()
        self.server.stop()

    def counts(self) -> Sent:
        with self._lock:
            sent = Sent(**asdict(self.sent))  # asdict copies the callbacks dict too
        sent.edits = self.changes.sent("edit")
        return sent

    def customers(self) -> dict[str, dict[str, Any]]:
        """A copy of the customers the CRM holds, by customer number."""
        with self._lock:
            return {no: dict(record) for no, record in self._customers.items()}

    def quiet(self, seconds: float) -> list[str]:
        """Customers that have not changed here for ``seconds``."""
        since = time.monotonic() - seconds
        with self._lock:
            return [no for no in self._customers if self._touched.get(no, 0.0) <= since]

    def edit(self, customer_no: str, **changes: Any) -> None:
        """A CRM user changes a customer; the CRM reports it like every change."""
        with self._lock:
            self._change(customer_no, changes, "edit")

    def _change(self, customer_no: str, changes: dict[str, Any], kind: str) -> dict[str, Any]:
        """Apply and report a change; under the lock, so changes are reported in order."""
        record = self._customers[customer_no]
        record.update(changes, updated_at=now_iso())
        self._touched[customer_no] = time.monotonic()
        self.changes.put(dict(record), "update", kind)
        return dict(record)

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
        action = "create" if event.kind == "customer" else "won"
        status = deliver(client, self._ingress + event.path, orjson.dumps(event.payload),
                         {"X-Event-Id": event.id, "X-CRM-Event": action}, self._secret,
                         self._halt.wait)
        if 200 <= status < 300:
            self._record(event)
        elif status:
            with self._lock:
                self.sent.refused += 1

    def _record(self, event: Event) -> None:
        self._events.accepted(event)
        with self._lock:
            if event.kind == "customer":
                self.sent.customers += 1
                self.sent.bad_customers += event.bad
                if not event.bad:
                    self._customers[event.payload["customer_no"]] = dict(event.payload)
                    self._touched[event.payload["customer_no"]] = time.monotonic()
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

        async def write(request: Request) -> Response:
            """silobridge writes fields of a customer (PATCH: fields it leaves out are kept)."""
            customer_no = request.path_params["customer_no"]
            fields = orjson.loads(await request.body())
            if not isinstance(fields, dict):
                return JSONResponse({"error": "a JSON object of fields"}, 400)
            key = request.headers.get("idempotency-key") or str(uuid.uuid4())
            with self._lock:
                if customer_no not in self._customers:
                    return JSONResponse({"error": f"no customer {customer_no}"}, 404)
                if key in self._write_keys:  # a resend after a lost answer: done already
                    return JSONResponse(self._customers[customer_no])
                self._write_keys.add(key)
                changes = {k: v for k, v in fields.items() if k != "customer_no"}
                old = self._customers[customer_no]
                self.sent.writes += 1
                self.sent.idle_writes += all(old.get(k) == v for k, v in changes.items())
                record = self._change(customer_no, changes, "write")
            return JSONResponse(record)

        async def state(_request: Request) -> Response:
            counts = self.counts()
            return JSONResponse({**asdict(counts), "total": counts.total})

        return Starlette(routes=[Route("/callbacks/{name}", callback, methods=["POST"]),
                                 Route("/api/customers/{customer_no}", write,
                                       methods=["PATCH"]),
                                 Route("/state", state)])
