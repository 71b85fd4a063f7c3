"""The users of both demo systems: they edit customers while the demo runs.

CRM users change a customer's e-mail (a field the CRM owns), ERP clerks a customer's credit
limit and payment terms (fields the ERP owns), and every third edit is one customer edited in
both systems at the same moment, before either change reached the other side: the case the
conflict rule of the demo config decides.

Who edits what follows the ownership the demo config states: users edit their own system's
fields. A customer is edited only when it has not changed in that system for ``QUIET``
seconds, as people rarely edit a record the very second an integration wrote it. That also
keeps every edit a change of its own: two edits of one customer a moment apart would let
ordering skip the first as superseded (one write for two changes), and an edit made while
the system's report of silobridge's last write is still in flight carries the same values in
the fingerprinted fields as that report (see docs/two-way.md, "Echo suppression").
"""

from __future__ import annotations

import itertools
import random
import threading
from dataclasses import dataclass

from silobridge_demo.crm import DemoCrm
from silobridge_demo.erp import ErpState

__all__ = ["QUIET", "Edited", "Editors"]

QUIET = 5.0
"""Seconds a customer must have been unchanged in a system before its users edit it."""
_LIMITS = ("5000", "10000", "25000", "50000", "100000")
_TERMS = ("NET14", "NET30", "NET45", "NET60")


@dataclass(frozen=True)
class Edited:
    crm: int
    erp: int
    both: int
    """Of those, customers edited in both systems at once (counted once on each side too)."""


class Editors:
    """Edits ``per_second`` times a second, in turn: CRM, ERP, both at once."""

    def __init__(self, crm: DemoCrm, erp: ErpState, per_second: float, seed: int = 16) -> None:
        self._crm = crm
        self._erp = erp
        self._interval = 1.0 / per_second
        self._random = random.Random(seed)
        self._numbers = itertools.count(1)
        self._counts = {"crm": 0, "erp": 0, "both": 0}
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="demo-editors", daemon=True)

    def start(self) -> Editors:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._halt.set()
        self._thread.join(10)

    def counts(self) -> Edited:
        with self._lock:
            return Edited(**self._counts)

    def _loop(self) -> None:
        turns = itertools.cycle(("crm", "erp", "both"))
        while not self._halt.wait(self._interval):
            turn = next(turns)
            candidates = self._quiet(crm=turn != "erp", erp=turn != "crm")
            if not candidates:
                continue
            customer = self._random.choice(candidates)
            if turn != "crm":
                self._edit_erp(customer)
            if turn != "erp":
                self._edit_crm(customer)
            with self._lock:
                self._counts["crm"] += turn != "erp"
                self._counts["erp"] += turn != "crm"
                self._counts["both"] += turn == "both"

    def _quiet(self, *, crm: bool, erp: bool) -> list[str]:
        """Customers in both systems, unchanged for QUIET seconds where they will be edited."""
        in_crm = set(self._crm.quiet(QUIET if crm else 0.0))
        in_erp = set(self._erp.quiet(QUIET if erp else 0.0))
        return sorted(in_crm & in_erp)

    def _edit_crm(self, customer: str) -> None:
        self._crm.edit(customer, email=f"buyer{customer[2:]}.{next(self._numbers)}"
                                       "@customer.example")

    def _edit_erp(self, customer: str) -> None:
        with self._erp.lock:
            account = self._erp.accounts[customer]
            limit = self._random.choice([v for v in _LIMITS if v != account["CreditLimit"]])
            self._erp.edit(customer, CreditLimit=limit, PaymentTerms=self._random.choice(_TERMS))
