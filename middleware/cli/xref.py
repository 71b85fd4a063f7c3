"""``silobridge xref list|show|link|unlink|import|export``: see and fix cross-references.

A conflict dead-letters a message with a message that names this command; before it existed an
integrator stopped the daemon and deleted rows in the ``sqlite3`` shell, guessing the table.
The commands work on the configured store (SQLite or PostgreSQL) while the daemon runs, and
every change is an audit line on stderr through the masking logger: who (the OS user), what,
and the link before and after. ``list``, ``show``, ``link`` and ``unlink`` go through a running
daemon's admin API instead when one is named and a token is given (``adminapi``, ``xref_api``),
so its roles and audit log apply; ``import`` and ``export`` have no API endpoint and always use
the store.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from middleware.cli import xref_api
from middleware.cli.adminapi import add_api_argument, store_unless_api
from middleware.cli.common import add_config_argument, add_json_argument, print_json
from middleware.cli.xref_csv import NAMESPACE, read_links, write_links
from middleware.config.loader import load_config
from middleware.log import configure_logging, get_logger
from middleware.stores import Stores, XrefStore, open_stores
from middleware.stores.base import XrefLink

__all__ = ["register"]

_PAGE = 500
log = get_logger("silobridge.audit")


def register(sub: Any) -> None:
    group = sub.add_parser("xref", help="see and fix cross-references (links between keys)")
    commands = group.add_subparsers(dest="xref_command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="links, filtered by namespace and/or key")
    listing.add_argument("--namespace", help="only links with this namespace on a side, "
                                             "e.g. crm.customer")
    listing.add_argument("--key", help="only links with this key on a side")
    listing.add_argument("--limit", type=int, default=1000,
                         help="show at most this many (default 1000)")
    add_json_argument(listing)
    listing.set_defaults(handler=_list)

    show = commands.add_parser("show", help="every link of one key, e.g. crm.customer:C-1001")
    show.add_argument("ref", metavar="NS:KEY", help="namespace and key, e.g. erp.account:A-77")
    add_json_argument(show)
    show.set_defaults(handler=_show)

    link = commands.add_parser("link", help="link two keys (one-to-one, both ways)")
    link.add_argument("ref_a", metavar="NS:KEY", help="one side, e.g. crm.customer:C-1001")
    link.add_argument("ref_b", metavar="NS:KEY", help="the other side, e.g. erp.account:A-77")
    link.set_defaults(handler=_link)

    unlink = commands.add_parser("unlink", help="remove the link of a key to a namespace")
    unlink.add_argument("ref", metavar="NS:KEY", help="e.g. crm.customer:C-1001")
    unlink.add_argument("other", metavar="NS", help="the namespace it links to, e.g. erp.account")
    unlink.set_defaults(handler=_unlink)

    load = commands.add_parser("import", help="add links from a CSV file (header: the two "
                                              "namespaces; rows: key pairs), in one transaction")
    load.add_argument("file", help="CSV file; - reads standard input")
    load.add_argument("--dry-run", action="store_true",
                      help="check every row and report conflicts, write nothing")
    load.set_defaults(handler=_import)

    dump = commands.add_parser("export", help="write the links between two namespaces as CSV")
    dump.add_argument("ns_a", metavar="NS", help="first column, e.g. crm.customer")
    dump.add_argument("ns_b", metavar="NS", help="second column, e.g. erp.account")
    dump.add_argument("-o", "--output", help="file to write (default standard output)")
    dump.set_defaults(handler=_export)

    for parser in (listing, show, link, unlink, load, dump):
        add_config_argument(parser, required=True)
    for parser in (listing, show, link, unlink):
        add_api_argument(parser)


class _Usage(Exception):
    """Bad input on the command line: exit 2 with the message."""


@contextmanager
def _store(args: argparse.Namespace) -> Iterator[XrefStore]:
    stores: Stores = open_stores(load_config(args.config).config.store)
    try:
        yield stores.xref
    finally:
        stores.close()


def _ref(text: str) -> tuple[str, str]:
    namespace, sep, key = text.partition(":")
    if not sep or not NAMESPACE.fullmatch(namespace) or not key:
        raise _Usage(f"{text!r} is not NS:KEY; write it like crm.customer:C-1001")
    return namespace, key


def _namespace(text: str) -> str:
    if not NAMESPACE.fullmatch(text):
        raise _Usage(f"{text!r} is not a namespace; write it like erp.account")
    return text


def _audit(action: str, before: str | None, after: str | None, **more: Any) -> None:
    """One audit line per change; configured here because other commands log warnings only."""
    try:
        who = getpass.getuser()
    except (OSError, KeyError):  # a container user without a passwd entry
        who = f"uid {os.getuid()}"
    log.info("xref changed", who=who, action=action, before=before, after=after, **more)


def _usage_errors(handler: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        configure_logging(level="info")
        try:
            code: int = handler(args)
        except _Usage as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return code

    return run


def _pages(store: XrefStore, namespace: str | None, key: str | None) -> Iterator[XrefLink]:
    after = None
    while True:
        page = store.links(namespace, key, after=after, limit=_PAGE)
        yield from page
        if len(page) < _PAGE:
            return
        after = page[-1]


def _as_json(link: XrefLink) -> dict[str, str]:
    return {"ns_a": link.ns_a, "key_a": link.key_a, "ns_b": link.ns_b, "key_b": link.key_b}


@_usage_errors
def _list(args: argparse.Namespace) -> int:
    namespace = None if args.namespace is None else _namespace(args.namespace)
    code = store_unless_api(args, lambda api: xref_api.list_via(
        api, namespace, args.key, args.limit, args.json))
    if code is not None:
        return code
    with _store(args) as store:
        found: list[XrefLink] = []
        for link in _pages(store, namespace, args.key):
            if len(found) == args.limit:
                print(f"(more than {args.limit}; raise --limit or filter)", file=sys.stderr)
                break
            found.append(link)
    if args.json:
        print_json([_as_json(link) for link in found])
        return 0
    for link in found:
        print(link)
    print(f"{len(found)} link(s)")
    return 0


@_usage_errors
def _show(args: argparse.Namespace) -> int:
    namespace, key = _ref(args.ref)
    code = store_unless_api(args, lambda api: xref_api.show_via(api, namespace, key, args.json))
    if code is not None:
        return code
    with _store(args) as store:
        found = list(_pages(store, namespace, key))
    if args.json:
        print_json([_as_json(link) for link in found])
    for link in found if not args.json else []:
        print(link)
    if not found:
        print(f"no link for {namespace}:{key}", file=sys.stderr)
        return 1
    return 0


@_usage_errors
def _link(args: argparse.Namespace) -> int:
    (ns_a, key_a), (ns_b, key_b) = _ref(args.ref_a), _ref(args.ref_b)
    if ns_a == ns_b:
        raise _Usage("both keys are in one namespace; a link joins two systems")
    code = store_unless_api(args, lambda api: xref_api.link_via(api, ns_a, key_a, ns_b, key_b))
    if code is not None:
        return code
    with _store(args) as store:
        before = store.lookup(ns_a, key_a, ns_b)
        store.link(ns_a, key_a, ns_b, key_b)  # a conflict raises, naming the unlink command
    if before == key_b:
        print(f"already linked: {ns_a}:{key_a} <-> {ns_b}:{key_b}")
        return 0
    _audit("link", None, f"{ns_a}:{key_a} <-> {ns_b}:{key_b}")
    print(f"linked {ns_a}:{key_a} <-> {ns_b}:{key_b}")
    return 0


@_usage_errors
def _unlink(args: argparse.Namespace) -> int:
    namespace, key = _ref(args.ref)
    other = _namespace(args.other)
    code = store_unless_api(args, lambda api: xref_api.unlink_via(api, namespace, key, other))
    if code is not None:
        return code
    with _store(args) as store:
        removed = store.unlink(namespace, key, other)
    if removed is None:
        print(f"error: {namespace}:{key} has no link to {other}", file=sys.stderr)
        return 1
    _audit("unlink", f"{namespace}:{key} <-> {other}:{removed}", None)
    print(f"unlinked {namespace}:{key} <-> {other}:{removed}")
    return 0


@_usage_errors
def _import(args: argparse.Namespace) -> int:
    name = "<stdin>" if args.file == "-" else args.file
    if args.file == "-":
        parsed = read_links(sys.stdin, name)
    else:
        with Path(args.file).open(encoding="utf-8-sig", newline="") as stream:
            parsed = read_links(stream, name)
    if parsed.problems:
        print(f"error: {len(parsed.problems)} bad row(s); nothing imported:", file=sys.stderr)
        for problem in parsed.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    with _store(args) as store:
        report = store.import_links(parsed.links, dry_run=args.dry_run)
    for index, reason in report.conflicts:
        print(f"conflict: {name}:{parsed.lines[index]}: {reason}", file=sys.stderr)
    if not args.dry_run:
        for link in report.added:
            _audit("import", None, str(link), file=name)
    verb = "would add" if args.dry_run else "added"
    print(f"{verb} {len(report.added)} link(s), {report.present} already present, "
          f"{len(report.conflicts)} conflict(s) skipped")
    return 1 if report.conflicts else 0


@_usage_errors
def _export(args: argparse.Namespace) -> int:
    ns_a, ns_b = _namespace(args.ns_a), _namespace(args.ns_b)
    with _store(args) as store:
        links = [link for link in _pages(store, ns_a, None) if ns_b in (link.ns_a, link.ns_b)
                 and link.ns_a != link.ns_b]
    if args.output:
        with Path(args.output).open("w", encoding="utf-8", newline="") as stream:
            count = write_links(stream, ns_a, ns_b, links)
        print(f"exported {count} link(s) to {args.output}", file=sys.stderr)
    else:
        write_links(sys.stdout, ns_a, ns_b, links)
    return 0
