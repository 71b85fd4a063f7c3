"""The CSV form of cross-references, for the initial load every project starts with (existing
customer numbers and account ids) and for exports an integrator can read in a spreadsheet.

The header row names the two namespaces, each row is one pair of keys::

    crm.customer,erp.account
    C-1001,A-77
    C-1002,A-78

Reading reports every bad row with its line number before anything is written, so a file is
fixed in one round. A UTF-8 byte order mark (as spreadsheets write it) is accepted.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TextIO

from middleware.stores.base import XrefLink
from middleware.stores.xref_rules import canonical

__all__ = ["NAMESPACE", "CsvLinks", "read_links", "write_links"]

NAMESPACE = re.compile(r"[\w-]+\.[\w-]+")
"""``<system>.<entity>``, as in a mapping's ``xref: crm.customer -> erp.account``."""


@dataclass
class CsvLinks:
    """The pairs read (canonical links with their line numbers), or the problems found."""

    links: list[XrefLink]
    lines: list[int]
    problems: list[str]


def read_links(stream: TextIO, name: str) -> CsvLinks:
    """Parse a CSV of key pairs; every problem is ``name:line: what, how to fix it``."""
    rows = csv.reader(stream)
    problems: list[str] = []
    header = next(rows, None)
    if header is None:
        return CsvLinks([], [], [f"{name}: the file is empty; the first row names the two "
                                 f"namespaces, e.g. crm.customer,erp.account"])
    namespaces = [cell.strip().lstrip("\ufeff") for cell in header]
    if len(namespaces) != 2 or not all(NAMESPACE.fullmatch(ns) for ns in namespaces) \
            or namespaces[0] == namespaces[1]:
        return CsvLinks([], [], [f"{name}:1: the header must name two different namespaces "
                                 f"(<system>.<entity>), e.g. crm.customer,erp.account; found "
                                 f"{','.join(header)!r}"])
    ns_a, ns_b = namespaces
    links: list[XrefLink] = []
    lines: list[int] = []
    for row in rows:
        line = rows.line_num
        if not any(cell.strip() for cell in row):
            continue  # a blank line, as editors leave at the end
        keys = [cell.strip() for cell in row]
        if len(keys) != 2:
            problems.append(f"{name}:{line}: {len(keys)} columns; each row is one {ns_a} key "
                            f"and one {ns_b} key")
        elif not all(keys):
            missing = ns_a if not keys[0] else ns_b
            problems.append(f"{name}:{line}: the {missing} key is empty; fill it or drop the row")
        else:
            links.append(XrefLink(*canonical(ns_a, keys[0], ns_b, keys[1])))
            lines.append(line)
    return CsvLinks(links, lines, problems)


def write_links(stream: TextIO, ns_a: str, ns_b: str, links: Iterable[XrefLink]) -> int:
    """Write pairs between two namespaces in the order given; returns how many rows."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow([ns_a, ns_b])
    count = 0
    for link in links:
        first, second = ((link.key_a, link.key_b) if link.ns_a == ns_a
                         else (link.key_b, link.key_a))
        writer.writerow([first, second])
        count += 1
    return count
