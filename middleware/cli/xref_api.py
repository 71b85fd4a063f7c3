"""``silobridge xref list|show|link|unlink`` through a daemon's admin API (``adminapi``): the
same output and exit codes as the direct way, with the daemon's role checks (``xref:read``,
``xref:write``) and its audit log (``xref.fix``, ``xref.unlink`` under the token's user) in
between.

The API's search matches a key by prefix on either side; the CLI's filters are exact and a
key and namespace given together must be on one side, so the answers are narrowed here. The
API's ``PUT /api/v1/xref`` replaces whatever links either key had, whereas ``xref link``
refuses to, so that a wrong link is removed on purpose (``xref unlink``) and never silently:
``link_via`` looks first and raises the store's own conflict error when a link is in the way.
Between that look and the write another writer may link one of the keys; the API then
replaces that link, and the audit record shows what it replaced.

``import`` and ``export`` have no admin API endpoint: they always use the store.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from middleware.cli.adminapi import AdminApi, ApiRefused
from middleware.cli.common import print_json
from middleware.stores.base import XrefLink
from middleware.stores.xref_rules import conflict

__all__ = ["link_via", "list_via", "show_via", "unlink_via"]

_SEARCH = "/api/v1/xref"


def _links(api: AdminApi, namespace: str | None, key: str | None) -> Iterator[XrefLink]:
    """The links the direct listing would give, read page by page from the API's search."""
    params = {name: value for name, value in (("namespace", namespace), ("key", key))
              if value is not None}
    for row in api.pages(_SEARCH, "links", params):
        link = XrefLink(row["ns_a"], row["key_a"], row["ns_b"], row["key_b"])
        if key is None or any(key == side_key and namespace in (None, side_ns)
                              for side_ns, side_key in ((link.ns_a, link.key_a),
                                                        (link.ns_b, link.key_b))):
            yield link


def _as_json(link: XrefLink) -> dict[str, str]:
    return {"ns_a": link.ns_a, "key_a": link.key_a, "ns_b": link.ns_b, "key_b": link.key_b}


def list_via(api: AdminApi, namespace: str | None, key: str | None, limit: int,
             as_json: bool) -> int:
    found: list[XrefLink] = []
    for link in _links(api, namespace, key):
        if len(found) == limit:
            print(f"(more than {limit}; raise --limit or filter)", file=sys.stderr)
            break
        found.append(link)
    if as_json:
        print_json([_as_json(link) for link in found])
        return 0
    for link in found:
        print(link)
    print(f"{len(found)} link(s) (through {api.url})")
    return 0


def show_via(api: AdminApi, namespace: str, key: str, as_json: bool) -> int:
    found = list(_links(api, namespace, key))
    if as_json:
        print_json([_as_json(link) for link in found])
    for link in found if not as_json else []:
        print(link)
    if not found:
        print(f"no link for {namespace}:{key}", file=sys.stderr)
        return 1
    return 0


def _lookup(api: AdminApi, from_ns: str, key: str, to_ns: str) -> str | None:
    """The key ``from_ns:key`` links to in ``to_ns``, as the store's ``lookup`` answers."""
    for link in _links(api, from_ns, key):
        if link.ns_a == from_ns and link.key_a == key and link.ns_b == to_ns:
            return link.key_b
        if link.ns_b == from_ns and link.key_b == key and link.ns_a == to_ns:
            return link.key_a
    return None


def link_via(api: AdminApi, ns_a: str, key_a: str, ns_b: str, key_b: str) -> int:
    def lookup(from_ns: str, key: str, to_ns: str) -> str | None:
        return _lookup(api, from_ns, key, to_ns)

    linked_b, linked_a = lookup(ns_a, key_a, ns_b), lookup(ns_b, key_b, ns_a)
    if linked_b == key_b:
        print(f"already linked: {ns_a}:{key_a} <-> {ns_b}:{key_b}")
        return 0
    if linked_b is not None or linked_a is not None:
        raise conflict(lookup, ns_a, key_a, ns_b, key_b)  # main prints it, exit 1
    api.call("PUT", _SEARCH, body={"ns_a": ns_a, "key_a": key_a, "ns_b": ns_b, "key_b": key_b})
    print(f"linked {ns_a}:{key_a} <-> {ns_b}:{key_b} (through {api.url}, audited)")
    return 0


def unlink_via(api: AdminApi, namespace: str, key: str, other: str) -> int:
    try:
        removed = api.call("POST", f"{_SEARCH}/unlink",
                           body={"namespace": namespace, "key": key, "other": other})["removed"]
    except ApiRefused as exc:
        if exc.status != 404:
            raise
        print(f"error: {namespace}:{key} has no link to {other}", file=sys.stderr)
        return 1
    gone = removed["key_b"] if removed["ns_b"] == other else removed["key_a"]
    print(f"unlinked {namespace}:{key} <-> {other}:{gone} (through {api.url}, audited)")
    return 0
