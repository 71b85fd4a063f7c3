"""``silobridge demo``: the daemon on the demo config, the demo CRM and ERP, and a live view.

The daemon runs as a subprocess (its own signals and logs, in a file); the demo ERP and CRM run
as threads here, so their records can be compared with what the daemon reports. The run starts
from empty demo queues and a fresh store, so every number on the screen belongs to this run.
Both systems report every change of a customer back to silobridge, and their users edit
customers while it runs (``edits``), so the customer routes sync both ways.

At the end (``--duration`` elapsed or Ctrl-C) the CRM and the editors stop, the queues and the
systems' change reports settle, and the summary compares three independent counts per one-way
route: what the CRM sent (minus the bad events it made on purpose) or the warehouse reported,
what the daemon delivered (its metrics), and what the ERP holds (for shipments: the status
callbacks the CRM received). For customers it compares both systems field by field through
the cross-reference store and the writes per change (``compare``). The exit code is 0 when all
of it agrees and the bad events are all in the DLQs.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from middleware.broker.factory import blocking_channel, delete_queues
from middleware.broker.topology import route_queues
from middleware.cli.status import queue_status, route_status
from middleware.config.loader import LoadedConfig, load_config
from middleware.errors import BrokerUnavailable
from middleware.mapping import load_mapping
from middleware.scrape import Scrape, scrape, scrape_url
from middleware.stores import open_stores
from silobridge_demo.compare import TwoWay, compare_customers
from silobridge_demo.crm import SECRET_ENV, DemoCrm, demo_secret
from silobridge_demo.edits import Editors
from silobridge_demo.erp_server import DemoErpServer, report_changes
from silobridge_demo.resources import config_path
from silobridge_demo.view import Totals, render_summary, render_view
from silobridge_demo.warehouse import Warehouse
from silobridge_demo.webhooks import Outbox

__all__ = ["run_demo"]

BAD_EVERY = 12
"""One event in this many is a deliberately bad one."""
ROUTES = {"accounts": "demo-customer-account", "sales_orders": "demo-order-sales-order",
          "reservations": "demo-order-reservation", "shipments": "demo-shipment-to-crm"}
"""Record kind -> the demo route that creates it (shipments: status callbacks in the CRM)."""
TWO_WAY = ("demo-customer-account", "demo-account-customer")
"""The pair of customer routes, CRM -> ERP and ERP -> CRM."""
EDITS_PER_EVENT = 0.1
"""Users' edits per second, per CRM event per second (--rate)."""


def run_demo(rate: float, duration: float | None) -> int:
    """The demo's own config (package data): the counts below know its routes by name."""
    config = config_path()
    with tempfile.TemporaryDirectory(prefix="silobridge-demo-") as workdir:
        os.environ.setdefault(SECRET_ENV, demo_secret())
        # always a fresh store, even where SILOBRIDGE_DATA is set (the image sets it): the demo
        # ERP numbers its shipments from 1 each run, and a kept store would dedupe them away
        os.environ["SILOBRIDGE_DATA"] = workdir
        loaded = load_config(config)
        erp_url = urlsplit(os.environ.get("ERP_URL", "http://127.0.0.1:8090"))
        crm_url = urlsplit(os.environ.get("CRM_URL", "http://127.0.0.1:8091"))
        ingress = os.environ.get("INGRESS_URL") or (
            f"http://127.0.0.1:{loaded.config.ingress.port}")
        try:
            _delete_queues(loaded)
            erp = DemoErpServer(erp_url.hostname or "127.0.0.1", erp_url.port or 8090).start()
        except (BrokerUnavailable, OSError) as exc:
            print(f"error: cannot start the demo ({exc!r}); is RabbitMQ at AMQP_URL running, "
                  "and are the demo ports free?", file=sys.stderr)
            return 1
        log = Path(workdir) / "daemon.log"
        daemon = _start_daemon(config, log)
        feed = report_changes(erp.state, ingress).start()
        crm: DemoCrm | None = None
        editors: Editors | None = None
        try:
            if not _wait_ready(loaded, daemon):
                print(f"the daemon did not become ready; its log:\n{log.read_text()}",
                      file=sys.stderr)
                return 1
            crm = DemoCrm(ingress, crm_url.hostname or "127.0.0.1", crm_url.port or 8091,
                          rate=rate, bad_every=BAD_EVERY).start()
            editors = Editors(crm, erp.state, rate * EDITS_PER_EVENT).start()
            warehouse = Warehouse(erp.state, f"{ingress}/soap/erp/shipments")
            run = _Run(loaded, crm, editors, warehouse)
            _watch(run, rate, duration, log)
            editors.stop()
            crm.stop_sending()
            print("stopped sending; waiting for the queues to drain...", flush=True)
            _drain(loaded, [crm.changes, feed], settle=False)  # the warehouse ships what is there
            if not _until(lambda: warehouse.ship_and_report() == 0 and warehouse.pending == 0,
                          30):
                print("the warehouse still had shipments to report after 30s", flush=True)
            _drain(loaded, [crm.changes, feed])
            totals = run.totals(compare=True)
            print(render_summary(totals))
            return 0 if totals.consistent else 1
        finally:
            if editors is not None:
                editors.stop()
            if crm is not None:
                crm.stop()
            feed.close()
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(10)
            erp.stop()


def _delete_queues(loaded: LoadedConfig) -> None:
    """Remove what a previous demo run left, so this run's counts start at zero."""
    with blocking_channel(loaded.config.broker, "demo") as channel:
        delete_queues(channel, [queue.name for route in loaded.config.routes
                                for queue in route_queues(route, loaded.config)])


def _start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "middleware", "run", "-c", str(config), "--log-format",
             "json"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # a session of its own: Ctrl-C reaches the demo, which then stops the daemon


def _wait_ready(loaded: LoadedConfig, daemon: subprocess.Popen[bytes]) -> bool:
    url = scrape_url(loaded.config.ops.host, loaded.config.ops.port).replace("/metrics",
                                                                             "/readyz")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and daemon.poll() is None:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def _watch(run: _Run, rate: float, duration: float | None, log: Path) -> None:
    """Redraw the view every second (every 5 s as plain lines when not on a terminal)."""
    loaded, warehouse = run.loaded, run.warehouse
    url = scrape_url(loaded.config.ops.host, loaded.config.ops.port)
    tty = sys.stdout.isatty()
    started = before_at = time.monotonic()
    busy_at = started + 5
    # Server faults the ERP answers every 10 s: as many as the reservation route has retries,
    # so even a message hit by all of them is delivered by its last retry, never dead-lettered
    [reservations] = [r for r in loaded.config.routes if r.name == ROUTES["reservations"]]
    busy = len(loaded.config.retry_for(reservations).delays())
    before = scrape(url)
    try:
        while duration is None or time.monotonic() - started < duration:
            left = math.inf if duration is None else duration - (time.monotonic() - started)
            time.sleep(max(0.0, min(1.0 if tty else 5.0, left)))
            now, after = time.monotonic(), scrape(url)
            if now >= busy_at:  # the ERP is busy for a moment: retries, then deliveries
                warehouse.state.fail_next("ReserveInventory", busy)
                busy_at += 10
            warehouse.ship_and_report()
            rows = route_status(loaded.config, before, after, now - before_at)
            view = render_view(rows, run.totals(after),
                               elapsed=now - started, duration=duration, rate=rate, log=log,
                               metrics_url=url)
            print("\x1b[H\x1b[2J" + view if tty else view + "\n", flush=True)
            before, before_at = after, now
    except KeyboardInterrupt:
        print("\nCtrl-C: stopping", flush=True)


def _drain(loaded: LoadedConfig, outboxes: list[Outbox], timeout: float = 60.0,
           settle: bool = True) -> None:
    """Wait until no route has messages ready, in a retry tier or in flight, and the systems
    have reported all their changes; with ``settle``, twice in a row 1.5 s apart, because an
    event held for order returns from the hold queue (which the broker counts here leave out)
    only after ``hold_delay``."""
    url = scrape_url(loaded.config.ops.host, loaded.config.ops.port)

    def idle() -> bool:
        queues = queue_status(loaded.config) or {}
        metrics = scrape(url)
        waiting = sum((q.ready or 0) + (q.retry or 0) for q in queues.values())
        return (waiting == 0 and all(outbox.idle for outbox in outboxes)
                and (metrics is None or metrics.sum("silobridge_in_flight") == 0))

    def settled() -> bool:
        if not idle():
            return False
        if settle:
            time.sleep(1.5)
        return not settle or idle()

    if not _until(settled, timeout):
        print(f"the queues did not drain in {timeout:g}s; the counts below may not match yet",
              flush=True)


def _until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


class _Run:
    """The parts of a running demo the view and the summary count."""

    def __init__(self, loaded: LoadedConfig, crm: DemoCrm, editors: Editors,
                 warehouse: Warehouse) -> None:
        self.loaded = loaded
        self.crm = crm
        self.editors = editors
        self.warehouse = warehouse

    def totals(self, metrics: Scrape | None = None, *, compare: bool = False) -> Totals:
        """The counts; with ``compare``, both systems' customers field by field too."""
        config = self.loaded.config
        if metrics is None:
            metrics = scrape(scrape_url(config.ops.host, config.ops.port))
        queues = queue_status(config) or {}
        state = self.warehouse.state
        sent = self.crm.counts()
        with state.lock:
            records = {"accounts": len(state.accounts), "sales_orders": len(state.orders),
                       "reservations": len(state.reservations),
                       "shipments": sent.callbacks.get("shipments", 0)}
            accounts = {no: dict(account) for no, account in state.accounts.items()}
            erp_writes, idle, erp_edits = state.account_writes, state.idle_writes, state.edits
        delivered = {kind: metrics.sum("silobridge_messages_total", route=route,
                                       outcome="delivered") if metrics else None
                     for kind, route in ROUTES.items()}
        dead = {kind: queues[route].dlq if route in queues else None
                for kind, route in ROUTES.items()}
        customers = self.crm.customers()
        mismatches = self._compare(customers, accounts) if compare else []
        twoway = TwoWay(
            crm_changes=sent.customers - sent.bad_customers + sent.edits,
            erp_changes=erp_edits, both=self.editors.counts().both, erp_writes=erp_writes,
            crm_writes=sent.writes, idle_writes=idle + sent.idle_writes,
            compared=len(customers) if compare else 0, mismatches=mismatches,
            echoes=sum(metrics.sum("silobridge_messages_total", route=route, outcome="echo")
                       for route in TWO_WAY) if metrics else None,
            conflicts=metrics.sum("silobridge_conflicts_total") if metrics else None,
            rule=self._rule())
        return Totals(sent, self.warehouse.reported, records, delivered, dead, twoway)

    def _rule(self) -> str:
        [route] = [r for r in self.loaded.config.routes if r.name == TWO_WAY[0]]
        conflict = route.sync.conflict if route.sync is not None else None
        return "none" if conflict is None else conflict.rule

    def _compare(self, customers: dict[str, dict[str, Any]],
                 accounts: dict[str, dict[str, Any]]) -> list[str]:
        [route] = [r for r in self.loaded.config.routes if r.name == TWO_WAY[0]]
        assert route.mapping is not None  # the demo config names it
        mapping = load_mapping(self.loaded.resolve(route.mapping))
        stores = open_stores(self.loaded.config.store)
        try:
            return compare_customers(customers, accounts, lambda no: stores.xref.lookup(
                "crm.customer", no, "erp.account"), mapping)
        finally:
            stores.close()
