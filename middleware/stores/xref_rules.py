"""What every xref store agrees on: the stored order of a pair, the conflict error, and how a
bulk import is judged, so SQLite and PostgreSQL answer alike.

A conflict is permanent for the message that caused it, and an operator fixes it with the
``silobridge xref`` commands; the error therefore names both keys and the command, because an
operator reads it in ``dlq list`` and should not have to guess table names (issue 15).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from middleware.errors import ProcessingError
from middleware.stores.base import XrefImport, XrefLink

__all__ = ["canonical", "conflict", "judge_import", "listing_filter"]

Lookup = Callable[[str, str, str], str | None]


def canonical(ns_a: str, key_a: str, ns_b: str, key_b: str) -> tuple[str, str, str, str]:
    """The stored order of a pair, shared by every store so both see links alike."""
    return (ns_a, key_a, ns_b, key_b) if ns_a <= ns_b else (ns_b, key_b, ns_a, key_a)


def _clashes(lookup: Lookup, ns_a: str, key_a: str, ns_b: str, key_b: str) -> list[str]:
    """The stored links that contradict ``ns_a:key_a <-> ns_b:key_b``, in words."""
    found = []
    other_b = lookup(ns_a, key_a, ns_b)
    if other_b is not None and other_b != key_b:
        found.append(f"{ns_a}:{key_a} is already linked to {ns_b}:{other_b}; to link it to "
                     f"{key_b}, remove that with 'silobridge xref unlink {ns_a}:{key_a} {ns_b}'")
    other_a = lookup(ns_b, key_b, ns_a)
    if other_a is not None and other_a != key_a:
        found.append(f"{ns_b}:{key_b} is already linked to {ns_a}:{other_a}; to link it to "
                     f"{key_a}, remove that with 'silobridge xref unlink {ns_b}:{key_b} {ns_a}'")
    return found


def conflict(lookup: Lookup, ns_a: str, key_a: str, ns_b: str, key_b: str) -> ProcessingError:
    """A link that contradicts a stored one; permanent. The message names both keys, the link
    in the way, the command that removes it and the one that stores the new link (a capture
    that hits it is parked: the target already accepted, so the message is not replayed)."""
    clashes = _clashes(lookup, ns_a, key_a, ns_b, key_b) or [
        "the stored link changed while this one was written; look with 'silobridge xref show'"]
    return ProcessingError(
        f"cross-reference conflict linking {ns_a}:{key_a} <-> {ns_b}:{key_b} (links are "
        f"one-to-one): {'; '.join(clashes)}, then 'silobridge xref link {ns_a}:{key_a} "
        f"{ns_b}:{key_b}'; or correct the source data",
        retryable=False,
        details={"ns_a": ns_a, "key_a": key_a, "ns_b": ns_b, "key_b": key_b},
    )


def judge_import(links: Iterable[XrefLink], lookup: Lookup,
                 insert: Callable[[XrefLink], None]) -> XrefImport:
    """Sort the links of an import into added, already present and conflicting.

    ``lookup`` must see the links inserted earlier in the same import (the caller runs all of
    it in one transaction), so two rows of one file that contradict each other are caught too.
    """
    report = XrefImport()
    for index, link in enumerate(links):
        if lookup(link.ns_a, link.key_a, link.ns_b) == link.key_b:
            report.present += 1
            continue
        clashes = _clashes(lookup, link.ns_a, link.key_a, link.ns_b, link.key_b)
        if clashes:
            report.conflicts.append((index, "; ".join(clashes)))
            continue
        insert(link)
        report.added.append(link)
    return report


def listing_filter(namespace: str | None, key: str | None, after: XrefLink | None,
                   mark: str) -> tuple[str, list[str]]:
    """The WHERE clause (``mark`` is the driver's placeholder) and parameters of a listing."""
    clauses: list[str] = []
    params: list[str] = []
    if namespace is not None and key is not None:
        clauses.append(f"((ns_a = {mark} AND key_a = {mark})"
                       f" OR (ns_b = {mark} AND key_b = {mark}))")
        params += [namespace, key, namespace, key]
    elif namespace is not None:
        clauses.append(f"(ns_a = {mark} OR ns_b = {mark})")
        params += [namespace, namespace]
    elif key is not None:
        clauses.append(f"(key_a = {mark} OR key_b = {mark})")
        params += [key, key]
    if after is not None:
        clauses.append(f"(ns_a, key_a, ns_b, key_b) > ({mark}, {mark}, {mark}, {mark})")
        params += [after.ns_a, after.key_a, after.ns_b, after.key_b]
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params
