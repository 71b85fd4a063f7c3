"""``silobridge status -c FILE [--watch]``: one line per route, from the broker and the daemon.

Queue columns come from the broker (passive declares, the DLQ head for the oldest dead letter),
so they work while no daemon runs; in-flight, rates and sync lag come from the daemon's
``/metrics`` on the config's ops port and show ``-`` when it does not answer. Rates are the
change between two scrapes: the first table of a run waits one interval to have two. Routes
with ``sync.ordering: subject`` add the subjects held right now, read from the shared store (so
they cover every replica), below the table.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from middleware.broker.dlq import Queues, route_counts
from middleware.broker.factory import blocking_channel
from middleware.cli.common import add_config_argument, add_json_argument, print_json
from middleware.config.loader import load_config
from middleware.config.models import Config
from middleware.errors import BrokerUnavailable, SilobridgeError
from middleware.scrape import Scrape, histogram_quantile, scrape, scrape_url

__all__ = ["Queues", "RouteStatus", "held_subjects", "queue_status", "register", "render",
           "route_status"]

HELD_SHOWN = 5
"""Subjects named per route below the table; the count covers all of them (up to 1,000)."""

FAILED = ("retried", "dead_lettered", "requeued")
"""Outcomes counted as failed attempts (see middleware.outcome)."""


@dataclass(frozen=True)
class RouteStatus:
    route: str
    queues: Queues | None
    in_flight: float | None
    delivered_rate: float | None
    failed_rate: float | None
    lag_p95: float | None
    lag_p95_capped: bool = False
    """The p95 lies above the largest finite bucket: the real lag is *at least* ``lag_p95``."""


def register(sub: Any) -> None:
    status = sub.add_parser("status", help="per-route queues, rates, DLQ and sync lag")
    add_config_argument(status, required=True)
    add_json_argument(status)
    status.add_argument("--watch", action="store_true", help="redraw until Ctrl-C")
    status.add_argument("--interval", type=float, default=2.0,
                        help="seconds between samples (default 2)")
    status.set_defaults(handler=_status)


def _status(args: argparse.Namespace) -> int:
    config = load_config(args.config).config
    url = scrape_url(config.ops.host, config.ops.port)
    previous = (time.monotonic(), scrape(url))
    try:
        while True:
            time.sleep(args.interval)
            now, current = time.monotonic(), scrape(url)
            rows = route_status(config, previous[1], current, now - previous[0])
            held = held_subjects(config)
            if args.json:  # one document per sample: a JSON-lines stream with --watch
                print_json({"daemon": current is not None,
                            "routes": [asdict(row) for row in rows],
                            **({} if held is None else {"held": held})}, one_line=args.watch)
                if not args.watch:
                    return 0
                sys.stdout.flush()
                previous = (now, current)
                continue
            table = render(rows, daemon=current is not None, url=url) + render_held(held)
            if not args.watch:
                print(table)
                return 0
            sys.stdout.write("\x1b[H\x1b[2J" + table + "\n")
            sys.stdout.flush()
            previous = (now, current)
    except KeyboardInterrupt:
        return 0


def queue_status(config: Config) -> dict[str, Queues] | None:
    """Queue depths per route, or None when the broker cannot be reached."""
    try:
        with blocking_channel(config.broker, "status") as channel:
            return {route.name: route_counts(channel, config, route) for route in config.routes}
    except BrokerUnavailable:
        return None


def held_subjects(config: Config) -> dict[str, list[dict[str, Any]]] | None:
    """Per ordered route, the subjects an event holds now (in flight, or parked in a retry
    tier); None when no route is ordered. The store is opened (and migrated) like the daemon
    does; a store that cannot be read is reported in the result, not raised."""
    ordered = [r.name for r in config.routes if r.sync and r.sync.ordering == "subject"]
    if not ordered:
        return None
    from middleware.stores import open_stores

    try:
        stores = open_stores(config.store)
    except SilobridgeError as exc:
        return {name: [{"error": str(exc)}] for name in ordered}
    try:
        assert stores.sync is not None
        return {name: [{"subject": h.subject, "holder": h.holder, "parked": h.parked,
                        "seconds_left": round(h.seconds_left, 1)}
                       for h in stores.sync.held(name)] for name in ordered}
    except SilobridgeError as exc:
        return {name: [{"error": str(exc)}] for name in ordered}
    finally:
        stores.close()


def render_held(held: dict[str, list[dict[str, Any]]] | None) -> str:
    """Lines below the table: held subjects per ordered route ('' without ordered routes)."""
    if held is None:
        return ""
    lines = ["", "held subjects (sync.ordering: subject; an earlier event in flight or in a "
             "retry tier):"]
    for route, subjects in held.items():
        if subjects and "error" in subjects[0]:
            lines.append(f"  {route}: unknown ({subjects[0]['error']})")
            continue
        named = ", ".join(_printable(str(s["subject"])) for s in subjects[:HELD_SHOWN])
        more = f", +{len(subjects) - HELD_SHOWN} more" if len(subjects) > HELD_SHOWN else ""
        lines.append(f"  {route}: {len(subjects)}" + (f" ({named}{more})" if named else ""))
    return "\n".join(lines)


def _printable(text: str) -> str:
    """A subject as the terminal shows it: a source's subject is data, and control characters
    in it (an escape sequence that clears the screen or rewrites the line) are escaped."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256
                   else f"\\u{ord(c):04x}" for c in text)


def route_status(
    config: Config, before: Scrape | None, after: Scrape | None, seconds: float
) -> list[RouteStatus]:
    """One row per configured route; daemon columns are None without a scrape."""
    queues = queue_status(config)
    rows = []
    for route in config.routes:
        name = route.name
        in_flight = delivered = failed = lag = None
        capped = False
        if after is not None:
            in_flight = after.sum("silobridge_in_flight", route=name)
            buckets = after.buckets("silobridge_sync_lag_seconds", route=name)
            lag = histogram_quantile(0.95, buckets)
            capped = lag is not None and _beyond_last_bound(0.95, buckets)
            if before is not None and seconds > 0:
                delivered = _rate(before, after, seconds, name, ("delivered",))
                failed = _rate(before, after, seconds, name, FAILED)
        rows.append(RouteStatus(name, None if queues is None else queues.get(name), in_flight,
                                delivered, failed, lag, capped))
    return rows


def _beyond_last_bound(q: float, buckets: dict[float, float]) -> bool:
    """Whether the q-quantile's rank falls in the +Inf bucket, where a histogram only knows
    "more than the largest bound" (a year-old change and a four-hour-old one look alike)."""
    finite = [bound for bound in buckets if not math.isinf(bound)]
    total = max(buckets.values(), default=0.0)
    return bool(finite) and buckets[max(finite)] < q * total


def _rate(before: Scrape, after: Scrape, seconds: float, route: str,
          outcomes: tuple[str, ...]) -> float:
    def total(sample: Scrape) -> float:
        return sum(sample.sum("silobridge_messages_total", route=route, outcome=o)
                   for o in outcomes)

    return max(0.0, total(after) - total(before)) / seconds


_COLUMNS = ("route", "ready", "retry", "dlq", "dlq age", "in flight", "delivered/s",
            "failed/s", "lag p95")


def render(rows: list[RouteStatus], *, daemon: bool, url: str) -> str:
    """The table, with a line saying what could not be read."""
    cells = [_COLUMNS]
    for row in rows:
        q = row.queues or Queues(None, None, None, None)
        cells.append((
            row.route, _num(q.ready), _num(q.retry), _num(q.dlq), _seconds(q.dlq_age),
            _num(row.in_flight),
            _fixed(row.delivered_rate), _fixed(row.failed_rate),
            (">" if row.lag_p95_capped else "") + _seconds(row.lag_p95),
        ))
    widths = [max(len(line[i]) for line in cells) for i in range(len(_COLUMNS))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(line, widths, strict=True)))
             for line in cells]
    if not daemon:
        lines.append(f"(no daemon answers at {url}: broker columns only)")
    if rows and all(row.queues is None for row in rows):
        lines.append("(the broker cannot be reached: queue columns unknown)")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else str(int(value))


def _fixed(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("d", 172_800), ("h", 7_200), ("m", 120)):
        if value >= size:
            return f"{value / (size / 2):.0f}{unit}"
    return f"{value:.2f}s" if value < 10 else f"{value:.0f}s"
