"""``silobridge dlq`` through a daemon's admin API (``adminapi``): the same output as the
direct way, with the daemon's role checks and audit log in between.

Each ``*_via`` returns the exit code; ``adminapi.through_api`` runs one and answers None when
the command should go to the broker instead (no API configured, or the API cannot be reached).
"""

from __future__ import annotations

import argparse
import json
import sys

from middleware.cli.adminapi import AdminApi, ApiRefused
from middleware.cli.common import print_json

__all__ = ["list_via", "purge_via", "replay_via", "show_via"]


def list_via(api: AdminApi, args: argparse.Namespace) -> int:
    items = api.dead_letters(args.route, args.limit)
    if args.json:
        print_json(items)
        return 0
    print(f"{'ID':<38} {'TYPE':<28} {'SUBJECT':<14} {'ATT':>3} {'AGE':>8}  REASON")
    for item in items:
        age = item.get("age_seconds")
        reason = str(item.get("reason") or "")
        print(f"{item['id'] or '-':<38} {item['type'] or '-':<28} {item['subject'] or '-':<14} "
              f"{item['attempts']:>3} {'-' if age is None else f'{age:.0f}s':>8}  "
              f"{reason if args.wide else reason[:80]}")
    print(f"{len(items)} dead letter(s) of route {args.route} (through {api.url})")
    return 0


def show_via(api: AdminApi, args: argparse.Namespace) -> int:
    routes = [args.route] if args.route else api.routes()
    for route in routes:
        try:
            letter = api.dead_letter(route, args.id)
        except ApiRefused as exc:
            if exc.status == 404:
                continue
            raise
        print(f"route: {route}")
        if "headers" in letter:
            print("headers:")
            print(json.dumps(letter["headers"], indent=2))
        if letter.get("body_view") == "none":
            print("body: (your role does not show payload bodies)")
        else:
            print("body:" if letter.get("body_view") == "full" else "body (values masked):")
            print(json.dumps(letter.get("event", letter.get("raw")), indent=2))
        return 0
    print(f"error: no dead letter with id {args.id!r} in {', '.join(routes) or 'any route'}",
          file=sys.stderr)
    return 1


def replay_via(api: AdminApi, args: argparse.Namespace) -> int:
    ids = None if args.all else list(dict.fromkeys(args.ids))
    if args.dry_run:  # the API changes nothing without replaying: say what it holds
        present = [item["id"] for item in api.dead_letters(args.route, 100_000)]
        chosen = present if ids is None else [i for i in ids if i in present]
        for message_id in chosen:
            print(f"would replay {message_id}")
        print(f"would replay {len(chosen)} message(s) to route {args.route}")
        return 0
    done = api.replay(args.route, ids)
    for message_id in done["ids"]:
        print(f"replayed {message_id}")
    print(f"replayed {done['replayed']} message(s) to route {args.route} (through {api.url}, "
          f"audited)")
    for message_id in done["refused_accepted"]:
        print(f"error: not replayed: the target already accepted {message_id}; fix the link "
              f"with 'silobridge xref', then drop the dead letter", file=sys.stderr)
    missing = set(ids or ()) - set(done["ids"]) - set(done["refused_accepted"])
    if missing:
        print(f"error: not found in the DLQ: {', '.join(sorted(missing))}", file=sys.stderr)
    return 1 if missing or done["refused_accepted"] else 0


def purge_via(api: AdminApi, args: argparse.Namespace) -> int:
    print(f"purged {api.purge(args.route)} dead letter(s) (through {api.url}, audited)")
    return 0
