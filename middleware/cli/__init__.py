"""The ``silobridge`` command: one argparse tree, one submodule per command group.

Each submodule exposes ``register(subparsers)`` which adds its commands and sets ``handler`` (a
function taking the parsed args and returning the exit code). Only this package prints.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from middleware import plugins
from middleware.errors import BrokerUnavailable, ConfigError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    from middleware.cli import commands

    parser = argparse.ArgumentParser(
        prog="silobridge",
        description="Keep CRM and ERP systems in sync through RabbitMQ.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in commands.MODULES:
        module.register(sub)
    for adapter_type in plugins.known_types():
        spec = plugins.get(adapter_type)
        if spec is not None and spec.commands is not None:
            spec.commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and of ``python -m middleware``."""
    args = _parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except ConfigError as exc:
        print(f"invalid configuration ({len(exc.problems)} problem(s)):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except BrokerUnavailable as exc:  # an operator's command: the reason, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code
