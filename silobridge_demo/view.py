"""What ``silobridge demo`` shows: the live view and the closing comparison of counts (the
one-way records in a table, the two-way customers below it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from middleware.cli.status import RouteStatus, render
from silobridge_demo.compare import TwoWay
from silobridge_demo.crm import Sent

__all__ = ["KINDS", "SHOWN_MISMATCHES", "Totals", "render_summary", "render_view"]

KINDS = ("sales_orders", "reservations", "shipments")
"""One-way record kinds, in display order: two in the ERP, shipments as status callbacks in
the CRM. Accounts (customers) sync both ways and are checked by ``TwoWay``."""
SHOWN_MISMATCHES = 10


@dataclass(frozen=True)
class Totals:
    """Three independent counts per record kind, and what the CRM and the warehouse sent."""

    sent: Sent
    reported: int
    """Shipments the warehouse reported to the daemon's SOAP endpoint."""
    records: dict[str, int]
    """What the demo ERP holds (shipments: status callbacks the demo CRM received)."""
    delivered: dict[str, float | None]
    """Deliveries the daemon counted (silobridge_messages_total{outcome="delivered"})."""
    dead: dict[str, int | None]
    """Dead letters in each route's DLQ (accounts: the customer route's)."""
    twoway: TwoWay | None = None
    """The two-way customer sync; the closing summary compares both systems in it."""

    def expected(self, kind: str) -> tuple[int, int]:
        """(records, dead letters) the events the CRM sent must produce.

        A bad customer fails its mapping and a bad order the ERP's currency check; the stock
        reservation of a bad order is still made (it carries no currency).
        """
        sent = self.sent
        if kind == "accounts":
            return sent.customers - sent.bad_customers, sent.bad_customers
        if kind == "sales_orders":
            return sent.orders - sent.bad_orders, sent.bad_orders
        if kind == "shipments":
            return self.reported, 0
        return sent.orders, 0

    @property
    def consistent(self) -> bool:
        """Everything sent arrived where it should; a run whose events the ingress refused (a
        wrong webhook secret, say) or that sent nothing proves nothing and is not consistent."""
        def matches(kind: str) -> bool:
            records, dead = self.expected(kind)
            return self.records[kind] == self.delivered[kind] == records and \
                self.dead[kind] == dead

        sent = self.sent
        accounts = (self.records["accounts"], self.dead["accounts"]) == self.expected("accounts")
        return (sent.total > 0 and sent.refused == 0 and all(matches(kind) for kind in KINDS)
                and accounts and self.twoway is not None and self.twoway.consistent)


def render_view(rows: list[RouteStatus], totals: Totals, *, elapsed: float,
                duration: float | None, rate: float, log: Path, metrics_url: str) -> str:
    until = f" of {duration:.0f}s" if duration is not None else " (Ctrl-C stops)"
    sent = totals.sent
    delivered = sum(v or 0 for v in totals.delivered.values())
    dead = sum(v or 0 for v in totals.dead.values())
    lags = [row.lag_p95 for row in rows if row.lag_p95 is not None]
    lag = f"{max(lags):.2f}s" if lags else "-"
    return "\n".join([
        f"silobridge demo: {elapsed:.0f}s{until}, CRM sending {rate:g} events/s",
        f"sent {sent.total} (customers {sent.customers}, won orders {sent.orders}, "
        f"bad {sent.bad_customers + sent.bad_orders}, refused {sent.refused})   "
        f"delivered {delivered:.0f}   "
        f"in DLQ {dead}   sync lag p95 {lag}",
        "ERP records: " + ", ".join(f"{totals.records[k]} {k.replace('_', ' ')}"
                                    for k in ("accounts", *KINDS[:2]))
        + f"; shipments reported {totals.reported}, in the CRM {totals.records['shipments']}",
        *([] if totals.twoway is None else [_twoway_line(totals.twoway)]),
        "",
        render(rows, daemon=any(row.in_flight is not None for row in rows), url=metrics_url),
        "",
        f"daemon log: {log}",
    ])


def render_summary(totals: Totals) -> str:
    sent = totals.sent
    lines = [
        f"CRM sent: {sent.customers} customers ({sent.bad_customers} bad), "
        f"{sent.orders} won orders ({sent.bad_orders} bad); refused by the ingress: "
        f"{sent.refused}",
        f"warehouse reported {totals.reported} shipments; recorded = held by the ERP (shipments: "
        "status callbacks the CRM received)",
        f"{'record':<14}{'expected':>10}{'recorded':>10}{'delivered':>11}"
        f"{'DLQ':>6}{'DLQ expected':>14}",
    ]
    for kind in KINDS:
        records, dead = totals.expected(kind)
        delivered = totals.delivered[kind]
        lines.append(
            f"{kind.replace('_', ' '):<14}{records:>10}{totals.records[kind]:>10}"
            f"{'-' if delivered is None else f'{delivered:.0f}':>11}"
            f"{'-' if totals.dead[kind] is None else totals.dead[kind]:>6}{dead:>14}"
        )
    records, dead = totals.expected("accounts")
    lines.append(f"accounts: {totals.records['accounts']} in the ERP for {records} good CRM "
                 f"customers; bad customers in the DLQ {_count(totals.dead['accounts'])} "
                 f"({dead} expected)")
    if totals.twoway is not None:
        lines += _twoway_summary(totals.twoway)
    lines.append("result: counts match" if totals.consistent else
                 "result: MISMATCH between what was sent, delivered and recorded")
    return "\n".join(lines)


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _twoway_line(twoway: TwoWay) -> str:
    return (f"customers both ways: changes CRM {twoway.crm_changes}, ERP {twoway.erp_changes} "
            f"({twoway.both} on both sides at once); writes into the ERP {twoway.erp_writes}, "
            f"into the CRM {twoway.crm_writes}; echoes not written back "
            f"{_count(twoway.echoes)}")


def _twoway_summary(twoway: TwoWay) -> list[str]:
    lines = [
        "customers, both ways (demo-customer-account <-> demo-account-customer, conflict "
        f"rule: {twoway.rule}):",
        f"  changes: CRM {twoway.crm_changes} (new customers and edits), ERP "
        f"{twoway.erp_changes} (edits); {twoway.both} customers edited on both sides at once",
        f"  writes: into the ERP {twoway.erp_writes} = {_ratio(twoway.erp_writes_per_change)} "
        f"per CRM change, into the CRM {twoway.crm_writes} = "
        f"{_ratio(twoway.crm_writes_per_change)} per ERP change; writes that changed nothing "
        f"(echoes written back) {twoway.idle_writes}",
        f"  echoes recognised, not written back: {_count(twoway.echoes)}; conflicts resolved by "
        f"the rule: {_count(twoway.conflicts)}",
        f"  field by field, CRM vs ERP through the xref: {twoway.compared} customers compared, "
        f"{len(twoway.mismatches)} mismatches",
    ]
    lines += [f"    {line}" for line in twoway.mismatches[:SHOWN_MISMATCHES]]
    if len(twoway.mismatches) > SHOWN_MISMATCHES:
        lines.append(f"    ... and {len(twoway.mismatches) - SHOWN_MISMATCHES} more")
    return lines
