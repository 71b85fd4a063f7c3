"""``silobridge demo``: the daemon on the demo config, the demo CRM and ERP, and a live view.

The daemon runs as a subprocess (its own signals and logs, in a file); the demo ERP and CRM run
as threads here, so their records can be compared with what the daemon reports. The run starts
from empty demo queues and a fresh store, so every number on the screen belongs to this run.
At the end (``--duration`` elapsed or Ctrl-C) the CRM stops sending, the queues drain, and the
summary compares three independent counts per route: what the CRM sent (minus the bad events
it made on purpose) or the warehouse reported, what the daemon delivered (its metrics), and
what the ERP holds (for shipments: the status callbacks the CRM received); the exit code is 0
when they agree and the bad events are all in the DLQs.
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
from urllib.parse import urlsplit

import httpx

from middleware.broker.factory import blocking_channel, delete_queues
from middleware.broker.topology import route_queues
from middleware.cli.status import queue_status, route_status
from middleware.config.loader import LoadedConfig, load_config
from middleware.errors import BrokerUnavailable
from middleware.scrape import Scrape, scrape, scrape_url
from silobridge_demo.crm import SECRET_ENV, DemoCrm, Sent, demo_secret
from silobridge_demo.erp_server import DemoErpServer
from silobridge_demo.resources import config_path
from silobridge_demo.view import Totals, render_summary, render_view
from silobridge_demo.warehouse import Warehouse

__all__ = ["run_demo"]

BAD_EVERY = 12
"""One event in this many is a deliberately bad one."""
ROUTES = {"accounts": "demo-customer-account", "sales_orders": "demo-order-sales-order",
          "reservations": "demo-order-reservation", "shipments": "demo-shipment-to-crm"}
"""Record kind -> the demo route that creates it (shipments: status callbacks in the CRM)."""


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
        crm: DemoCrm | None = None
        try:
            if not _wait_ready(loaded, daemon):
                print(f"the daemon did not become ready; its log:\n{log.read_text()}",
                      file=sys.stderr)
                return 1
            crm = DemoCrm(ingress, crm_url.hostname or "127.0.0.1", crm_url.port or 8091,
                          rate=rate, bad_every=BAD_EVERY).start()
            warehouse = Warehouse(erp.state, f"{ingress}/soap/erp/shipments")
            _watch(loaded, crm, warehouse, rate, duration, log)
            crm.stop_sending()
            print("stopped sending; waiting for the queues to drain...", flush=True)
            _drain(loaded)
            if not _until(lambda: warehouse.ship_and_report() == 0 and warehouse.pending == 0,
                          30):
                print("the warehouse still had shipments to report after 30s", flush=True)
            _drain(loaded)
            totals = _totals(loaded, crm.counts(), warehouse)
            print(render_summary(totals))
            return 0 if totals.consistent else 1
        finally:
            if crm is not None:
                crm.stop()
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


def _watch(loaded: LoadedConfig, crm: DemoCrm, warehouse: Warehouse, rate: float,
           duration: float | None, log: Path) -> None:
    """Redraw the view every second (every 5 s as plain lines when not on a terminal)."""
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
            view = render_view(rows, _totals(loaded, crm.counts(), warehouse, after),
                               elapsed=now - started, duration=duration, rate=rate, log=log,
                               metrics_url=url)
            print("\x1b[H\x1b[2J" + view if tty else view + "\n", flush=True)
            before, before_at = after, now
    except KeyboardInterrupt:
        print("\nCtrl-C: stopping", flush=True)


def _drain(loaded: LoadedConfig, timeout: float = 60.0) -> None:
    """Wait until no route has messages ready, in a retry tier or in flight."""
    url = scrape_url(loaded.config.ops.host, loaded.config.ops.port)

    def idle() -> bool:
        queues = queue_status(loaded.config) or {}
        metrics = scrape(url)
        waiting = sum((q.ready or 0) + (q.retry or 0) for q in queues.values())
        return waiting == 0 and (metrics is None or metrics.sum("silobridge_in_flight") == 0)

    if not _until(idle, timeout):
        print(f"the queues did not drain in {timeout:g}s; the counts below may not match yet",
              flush=True)


def _until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def _totals(loaded: LoadedConfig, sent: Sent, warehouse: Warehouse,
            metrics: Scrape | None = None) -> Totals:
    if metrics is None:
        metrics = scrape(scrape_url(loaded.config.ops.host, loaded.config.ops.port))
    queues = queue_status(loaded.config) or {}
    state = warehouse.state
    with state.lock:
        records = {"accounts": len(state.accounts), "sales_orders": len(state.orders),
                   "reservations": len(state.reservations),
                   "shipments": sent.callbacks.get("shipments", 0)}
    delivered = {kind: metrics.sum("silobridge_messages_total", route=route,
                                   outcome="delivered") if metrics else None
                 for kind, route in ROUTES.items()}
    dead = {kind: queues[route].dlq if route in queues else None
            for kind, route in ROUTES.items()}
    return Totals(sent, warehouse.reported, records, delivered, dead)
