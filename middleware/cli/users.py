"""``silobridge users add|list|remove|set-role|token``: console users, managed from a shell.

The first admin has to come from somewhere other than the console: this command writes to the
configured store directly (the daemon need not run). Passwords are read from standard input
(``--password-stdin``, for scripts and secrets) or asked for twice without echo; they are stored
as argon2 hashes only. Every change is written to the audit log with the actor ``cli:<login>``.

Where a daemon runs, the same commands go through its admin API when one is named and a token
is given (``adminapi``, ``users_api``): then the token's user must be an admin, the daemon
writes the audit record under that user, and it keeps the last admin from being removed.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

from middleware.cli import users_api
from middleware.cli.adminapi import add_api_argument, store_unless_api
from middleware.cli.common import add_config_argument, add_json_argument, print_json
from middleware.config.loader import load_config
from middleware.console.audit import record
from middleware.console.auth import Authenticator, hash_password
from middleware.console.rbac import Role
from middleware.console.store import ConsoleStore, open_console_store

__all__ = ["register"]

_MIN_PASSWORD = 12


def register(sub: Any) -> None:
    users = sub.add_parser("users", help="console users, roles and API tokens")
    commands = users.add_subparsers(dest="users_command", required=True, metavar="COMMAND")
    roles = [role.value for role in Role]

    add = commands.add_parser("add", help="add a user")
    add.add_argument("name", help="login name")
    add.add_argument("--role", required=True, choices=roles, help="what the user may do")
    add.add_argument("--routes", default="", help="comma-separated routes (default: all)")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from standard input instead of asking")
    add.add_argument("--no-password", action="store_true",
                     help="no password: the user works through API tokens only")
    add.set_defaults(handler=_add)

    listing = commands.add_parser("list", help="list users, roles and routes")
    add_json_argument(listing)
    listing.set_defaults(handler=_list)

    remove = commands.add_parser("remove", help="remove a user with its sessions and tokens")
    remove.add_argument("name", help="login name")
    remove.set_defaults(handler=_remove)

    set_role = commands.add_parser("set-role", help="change a user's role and routes")
    set_role.add_argument("name", help="login name")
    set_role.add_argument("role", choices=roles, help="the new role")
    set_role.add_argument("--routes", default="", help="comma-separated routes (default: all)")
    set_role.set_defaults(handler=_set_role)

    token = commands.add_parser("token", help="issue an API token for a user (printed once)")
    token.add_argument("name", help="login name of the token's user")
    token.add_argument("--label", default="cli", help="what the token is for")
    token.set_defaults(handler=_token)

    for parser in (add, listing, remove, set_role, token):
        add_config_argument(parser, required=True)
        add_api_argument(parser)


def _store(args: argparse.Namespace) -> ConsoleStore:
    return open_console_store(load_config(args.config).config.store)


def _actor() -> str:
    try:
        return f"cli:{os.getlogin()}"
    except OSError:
        return f"cli:{os.environ.get('USER', 'unknown')}"


def _routes(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _read_password(from_stdin: bool) -> str | None:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("error: the passwords differ; nothing was changed", file=sys.stderr)
            return None
    if len(password) < _MIN_PASSWORD:
        print(f"error: the password has {len(password)} characters; use at least "
              f"{_MIN_PASSWORD} (a passphrase of a few words is fine)", file=sys.stderr)
        return None
    return password


def _add(args: argparse.Namespace) -> int:
    password = None  # read once: standard input cannot be read again for the fallback
    if not args.no_password:
        password = _read_password(args.password_stdin)
        if password is None:
            return 2
    code = store_unless_api(args, lambda api: users_api.add_via(
        api, args.name, args.role, _routes(args.routes), password))
    if code is not None:
        return code
    store = _store(args)
    try:
        if store.user(args.name) is not None:
            print(f"error: user {args.name!r} exists; use 'users set-role' to change it",
                  file=sys.stderr)
            return 1
        user = store.add_user(args.name, hash_password(password) if password else None,
                              args.role, _routes(args.routes))
        record(store, _actor(), "user.add", args.name, None, user.public())
        print(f"added {args.name} ({args.role})")
        return 0
    finally:
        store.close()


def _list(args: argparse.Namespace) -> int:
    code = store_unless_api(args, lambda api: users_api.list_via(api, args.json))
    if code is not None:
        return code
    store = _store(args)
    try:
        users = store.users()
    finally:
        store.close()
    if args.json:
        print_json([user.public() for user in users])
        return 0
    for user in users:
        print(f"{user.name}\t{user.role}\t{','.join(user.routes) or '*'}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    code = store_unless_api(args, lambda api: users_api.remove_via(api, args.name))
    if code is not None:
        return code
    store = _store(args)
    try:
        user = store.user(args.name)
        if user is None or not store.remove_user(args.name):
            print(f"error: no user {args.name!r}; 'users list' shows who exists",
                  file=sys.stderr)
            return 1
        record(store, _actor(), "user.remove", args.name, user.public(), None)
        print(f"removed {args.name}")
        return 0
    finally:
        store.close()


def _set_role(args: argparse.Namespace) -> int:
    code = store_unless_api(args, lambda api: users_api.set_role_via(
        api, args.name, args.role, _routes(args.routes)))
    if code is not None:
        return code
    store = _store(args)
    try:
        before = store.user(args.name)
        if before is None or not store.set_role(args.name, args.role, _routes(args.routes)):
            print(f"error: no user {args.name!r}; 'users add' creates one", file=sys.stderr)
            return 1
        after = store.user(args.name)
        record(store, _actor(), "user.update", args.name, before.public(),
               after.public() if after else None)
        print(f"{args.name} is now {args.role}")
        return 0
    finally:
        store.close()


def _token(args: argparse.Namespace) -> int:
    code = store_unless_api(args, lambda api: users_api.token_via(api, args.name, args.label))
    if code is not None:
        return code
    config = load_config(args.config).config
    store = open_console_store(config.store)
    try:
        if store.user(args.name) is None:
            print(f"error: no user {args.name!r}; 'users add' creates one", file=sys.stderr)
            return 1
        token = Authenticator(store, config.console).issue_token(args.name, args.label)
        record(store, _actor(), "token.add", args.name, None, {"label": args.label})
        print(token)
        return 0
    finally:
        store.close()
