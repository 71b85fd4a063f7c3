"""The two-way check at the end of ``silobridge demo``: both systems field by field, and how
many writes each change cost.

Every customer the CRM holds is looked up in the ERP through the cross-reference silobridge
stored when the ERP created the account (``crm.customer -> erp.account``), not by assuming equal
keys, and compared field by field: the CRM's own fields through the demo's mapping (the country
as the ERP spells it), the ERP's own fields as they are. An ERP account that no CRM customer
links to is a mismatch too.

Writes per change is counted by the systems themselves: writes silobridge made into the ERP per
change the CRM reported (its users' new customers and edits), and into the CRM per change of
the ERP's users. Anything but exactly 1.0 is a change lost or written twice; a write that
changed nothing is an echo written back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from middleware.mapping import Mapping

__all__ = ["OWN_FIELDS", "TwoWay", "compare_customers"]

OWN_FIELDS = (("credit_limit", "CreditLimit"), ("payment_terms", "PaymentTerms"))
"""(CRM field, ERP field) of the fields the ERP owns; the CRM's own come from the mapping."""

Lookup = Callable[[str], str | None]


def compare_customers(crm: dict[str, dict[str, Any]], erp: dict[str, dict[str, Any]],
                      account_of: Lookup, mapping: Mapping) -> list[str]:
    """One line per customer that differs (field names only); ``account_of`` is the xref."""
    by_id = {account["AccountId"]: account for account in erp.values()}
    linked: set[str] = set()
    mismatches = []
    for customer_no, customer in sorted(crm.items()):
        account_id = account_of(customer_no)
        account = by_id.get(account_id) if account_id is not None else None
        if account is None:
            mismatches.append(f"{customer_no}: no linked ERP account")
            continue
        linked.add(account_id or "")
        want = {key: value for key, value in mapping.apply(customer).items()
                if key != "AccountNo"}
        want.update({erp_field: customer.get(crm_field) for crm_field, erp_field in OWN_FIELDS})
        differ = [name for name, value in want.items() if account.get(name) != value]
        if differ:
            mismatches.append(f"{customer_no}: {', '.join(differ)} differ")
    mismatches += [f"ERP account {account_id}: no CRM customer links to it"
                   for account_id in sorted(set(by_id) - linked)]
    return mismatches


@dataclass(frozen=True)
class TwoWay:
    """What the two-way customer sync did, counted by both systems and the daemon."""

    crm_changes: int
    """New customers (the good ones) and CRM users' edits the ingress confirmed."""
    erp_changes: int
    """ERP users' edits."""
    both: int
    """Customers edited in both systems at the same moment."""
    erp_writes: int
    crm_writes: int
    idle_writes: int
    """Writes, in either system, that changed nothing: echoes written back."""
    compared: int
    mismatches: list[str] = field(default_factory=list)
    echoes: float | None = None
    """Echoes the daemon recognised and did not write back (both routes)."""
    conflicts: float | None = None
    """Customers changed on both sides within the window, resolved by the rule (both routes)."""
    rule: str = "-"
    """The conflict rule of the pair of routes, as the config names it."""

    @property
    def erp_writes_per_change(self) -> float | None:
        return self.erp_writes / self.crm_changes if self.crm_changes else None

    @property
    def crm_writes_per_change(self) -> float | None:
        return self.crm_writes / self.erp_changes if self.erp_changes else None

    @property
    def consistent(self) -> bool:
        """Both systems equal and every change written once. A run without CRM changes proves
        nothing; one stopped before any ERP user edited (Ctrl-C after a few seconds: edits
        wait for a customer quiet for 5 s) is consistent when nothing was written into the
        CRM either."""
        return (self.crm_changes > 0 and self.compared > 0
                and self.erp_writes == self.crm_changes and self.crm_writes == self.erp_changes
                and self.idle_writes == 0 and not self.mismatches)
