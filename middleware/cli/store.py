"""``silobridge store migrate -c FILE``: bring the configured store's schema up to date.

The daemon migrates at start too; operators who migrate before a rollout run this first, so the
new replicas start against a schema that is already current. Safe to run while old replicas
run and from several places at once (the migration takes the store's lock).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from middleware.config.loader import load_config
from middleware.errors import ProcessingError
from middleware.stores import SchemaTooNew, migrate_store

__all__ = ["register"]


def register(sub: Any) -> None:
    store = sub.add_parser("store", help="the state store (idempotency, xref, watermarks)")
    commands = store.add_subparsers(dest="store_command", required=True, metavar="COMMAND")
    migrate = commands.add_parser("migrate", help="apply the store's schema migrations")
    migrate.add_argument("-c", "--config", required=True, help="config file (YAML)")
    migrate.set_defaults(handler=_migrate)


def _migrate(args: argparse.Namespace) -> int:
    config = load_config(args.config).config.store
    where = config.path if config.kind == "sqlite" else "PostgreSQL"
    try:
        report = migrate_store(config)
    except (SchemaTooNew, ProcessingError) as exc:
        print(f"store migrate failed: {exc}", file=sys.stderr)
        return 1
    if report.applied:
        applied = ", ".join(str(version) for version in report.applied)
        print(f"{where}: schema version {report.before} -> {report.after} "
              f"(applied {applied})")
    else:
        print(f"{where}: schema version {report.after} is current; nothing to do")
    return 0
