"""``silobridge dlq list|show|replay|purge`` and ``silobridge peek``: operating dead letters.

``list``, ``show``, ``replay`` and ``purge`` go through a running daemon's admin API when one
is named and a token is given (``adminapi``), so roles and the audit log apply; otherwise, or
when the API cannot be reached, straight to the broker as before.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import orjson

from middleware.broker import dlq
from middleware.broker.topology import dlq_name
from middleware.cli.adminapi import add_api_argument, through_api
from middleware.cli.common import (
    add_config_argument,
    add_json_argument,
    config_from_args,
    print_json,
)
from middleware.cli.dlq_api import list_via, purge_via, replay_via, show_via
from middleware.config.models import Config

__all__ = ["register"]


def register(sub: Any) -> None:
    group = sub.add_parser("dlq", help="inspect and replay dead letters")
    commands = group.add_subparsers(dest="dlq_command", required=True)

    listing = commands.add_parser("list", help="dead letters of a route")
    listing.add_argument("route", help="route name (as in the config)")
    listing.add_argument("--limit", type=int, default=1000,
                         help="show at most this many (default 1000)")
    listing.add_argument("--wide", action="store_true",
                         help="the whole reason and the first-failure time, not a cut line")
    add_json_argument(listing)
    listing.set_defaults(handler=_list)

    show = commands.add_parser("show", help="headers and body of one dead letter")
    show.add_argument("id", help="message (envelope) id")
    show.add_argument("--route", help="only search this route's DLQ")
    show.set_defaults(handler=_show)

    replay = commands.add_parser("replay", help="send dead letters back to their route")
    replay.add_argument("route", help="route name (as in the config)")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", action="append", dest="ids", help="envelope id (repeatable)")
    which.add_argument("--all", action="store_true", help="every dead letter of the route")
    replay.add_argument("--dry-run", action="store_true", help="only say what would be replayed")
    replay.set_defaults(handler=_replay)

    drop = commands.add_parser("drop", help="delete named dead letters (e.g. a parked capture "
                                            "whose link was fixed)")
    drop.add_argument("route", help="route name (as in the config)")
    drop.add_argument("--id", action="append", dest="ids", required=True,
                      help="envelope id (repeatable)")
    drop.set_defaults(handler=_drop)

    purge = commands.add_parser("purge", help="delete every dead letter of a route")
    purge.add_argument("route", help="route name (as in the config)")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    purge.set_defaults(handler=_purge)

    migrate = commands.add_parser(
        "migrate", help="turn a quorum DLQ of an earlier release into the classic DLQ that "
                        "reading does not change (stop the workers first)")
    migrate.add_argument("routes", nargs="*", metavar="ROUTE",
                         help="route names (default: every route in the config)")
    migrate.set_defaults(handler=_migrate)

    peek = sub.add_parser("peek", help="show messages of any queue without removing them")
    peek.add_argument("queue", help="queue name, e.g. silobridge.route.quickstart")
    peek.add_argument("-n", "--count", type=int, default=10,
                      help="show at most this many (default 10)")
    add_json_argument(peek)
    peek.set_defaults(handler=_peek)

    for parser in (listing, show, replay, drop, purge, migrate, peek):
        add_config_argument(parser, required=False)
    for parser in (listing, show, replay, purge):
        add_api_argument(parser)


def _check_route(config: Config, route: str) -> bool:
    names = [r.name for r in config.routes]
    if names and route not in names:
        print(f"error: no route {route!r} in the config; routes: {', '.join(names)}",
              file=sys.stderr)
        return False
    return True


def _list(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if not _check_route(config, args.route):
        return 2
    via = through_api(args, config, list_via)
    if via is not None:
        return via
    letters = dlq.browse(config.broker, dlq_name(args.route), args.limit)
    if args.json:
        print_json([_summary(letter) for letter in letters])
        return 0
    first = f" {'FIRST FAILURE':<25}" if args.wide else ""
    print(f"{'ID':<38} {'TYPE':<28} {'SUBJECT':<14} {'ATT':>3} {'AGE':>8}{first}  REASON")
    for letter in letters:
        age = letter.age_seconds()
        since = letter.first_failed_at
        first = f" {since.isoformat() if since else '-':<25}" if args.wide else ""
        reason = letter.reason if args.wide else letter.reason[:80]
        print(f"{letter.message_id or '-':<38} {letter.type or '-':<28} "
              f"{letter.subject or '-':<14} {letter.attempts:>3} "
              f"{_age(age):>8}{first}  {reason}")
    print(f"{len(letters)} dead letter(s) in {dlq_name(args.route)}")
    return 0


def _summary(letter: dlq.DeadLetter) -> dict[str, Any]:
    return {"id": letter.message_id, "type": letter.type, "subject": letter.subject,
            "attempts": letter.attempts, "age_seconds": letter.age_seconds(),
            "first_failure": letter.first_failed_at, "reason": letter.reason}


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _show(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    via = through_api(args, config, show_via)
    if via is not None:
        return via
    routes = [args.route] if args.route else [r.name for r in config.routes]
    for route in routes:
        for letter in dlq.browse(config.broker, dlq_name(route)):
            if letter.message_id == args.id:
                print(f"route: {route}")
                print("headers:")
                print(json.dumps(letter.headers, indent=2, default=str))
                print("body:")
                print(_pretty(letter.body))
                return 0
    print(f"error: no dead letter with id {args.id!r} in {', '.join(routes) or 'any route'}"
          " (give -c CONFIG or --route ROUTE)", file=sys.stderr)
    return 1


def _pretty(body: bytes) -> str:
    try:
        return orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return body.decode("utf-8", errors="replace")


def _decoded(body: bytes) -> Any:
    """JSON bodies as JSON, anything else as text."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", errors="replace")


def _replay(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if not _check_route(config, args.route):
        return 2
    via = through_api(args, config, replay_via)
    if via is not None:
        return via
    ids = None if args.all else set(args.ids)
    result = dlq.replay(config.broker, args.route, ids, dry_run=args.dry_run)
    verb = "would replay" if args.dry_run else "replayed"
    for message_id in result.ids:
        print(f"{verb} {message_id}")
    print(f"{verb} {len(result.ids)} message(s) to route {args.route}")
    for message_id in result.accepted:
        print(f"error: not replayed: the target already accepted {message_id} (only storing its "
              f"answer failed; see 'silobridge dlq show {message_id}'): fix the link with "
              f"'silobridge xref', then 'silobridge dlq drop {args.route} --id {message_id}'",
              file=sys.stderr)
    missing = (ids or set()) - set(result.ids) - set(result.accepted)
    if missing:
        print(f"error: not found in the DLQ: {', '.join(sorted(missing))}", file=sys.stderr)
    return 1 if missing or result.accepted else 0


def _drop(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if not _check_route(config, args.route):
        return 2
    dropped = dlq.drop(config.broker, args.route, set(args.ids))
    for message_id in dropped:
        print(f"dropped {message_id}")
    missing = set(args.ids) - set(dropped)
    if missing:
        print(f"error: not found in the DLQ: {', '.join(sorted(missing))}", file=sys.stderr)
        return 1
    return 0


def _purge(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if not _check_route(config, args.route):
        return 2
    if not args.yes:
        if not sys.stdin.isatty():
            print("error: refusing to purge without --yes when not on a terminal",
                  file=sys.stderr)
            return 2
        answer = input(f"delete every dead letter of route {args.route!r}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    via = through_api(args, config, purge_via)
    if via is not None:
        return via
    print(f"purged {dlq.purge(config.broker, args.route)} dead letter(s)")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    routes = args.routes or [route.name for route in config.routes]
    if not routes:
        print("error: name the routes, or give -c CONFIG to migrate all of its routes",
              file=sys.stderr)
        return 2
    for route in routes:
        moved = dlq.migrate(config.broker, route)
        if moved is None:
            print(f"{dlq_name(route)}: already a classic queue; nothing to do")
        else:
            print(f"{dlq_name(route)}: now a classic queue; {moved} dead letter(s) kept")
    return 0


def _peek(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    letters = dlq.browse(config.broker, args.queue, args.count)
    if args.json:
        print_json([{"id": letter.message_id, "type": letter.type, "headers": letter.headers,
                     "body": _decoded(letter.body)} for letter in letters])
        return 0
    for letter in letters:
        print(f"--- {letter.message_id} {letter.type or ''}")
        print(_pretty(letter.body))
    return 0
