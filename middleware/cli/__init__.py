"""The ``silobridge`` command: one argparse tree, one submodule per command group.

Each submodule exposes ``register(subparsers)`` which adds its commands and sets ``handler`` (a
function taking the parsed args and returning the exit code). Only this package prints.

Exit codes (also in ``--help``): 0 done; 1 the operation failed (broker unreachable, nothing
found, the daemon stopped with work left); 2 bad usage, config or input; 130 interrupted;
141 the reader of standard output went away (``| head``), as for other Unix tools. An expected
failure is one line on stderr saying what went wrong and how to fix it, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from middleware import plugins
from middleware.errors import ConfigError, SilobridgeError

__all__ = ["EXIT_CODES", "main"]

EXIT_CODES = {
    0: "done",
    1: "the operation failed (broker unreachable, nothing found, work left undone)",
    2: "bad usage, configuration or input",
    130: "interrupted (Ctrl-C)",
    141: "standard output was closed by its reader (for example '| head')",
}


def _version() -> str:
    try:
        return version("silobridge")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    from middleware.cli import commands

    parser = argparse.ArgumentParser(
        prog="silobridge",
        description="Keep CRM and ERP systems in sync through RabbitMQ.",
        epilog="exit codes: " + "; ".join(f"{code} {what}" for code, what in EXIT_CODES.items())
        + ". SILOBRIDGE_CONFIG is the default for -c/--config; NO_COLOR turns colours off.",
    )
    parser.add_argument("--version", action="version", version=f"silobridge {_version()}",
                        help="print the version and exit")
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
    if args.command != "run":  # the daemon configures its own logging from its flags
        from middleware.log import configure_logging

        configure_logging(level="warning")
    try:
        code: int = args.handler(args)
        sys.stdout.flush()
    except ConfigError as exc:
        print(f"invalid configuration ({len(exc.problems)} problem(s)):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except SilobridgeError as exc:  # broker unreachable, publish refused, ...
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print(f"error: {exc.filename}: no such file; check the path", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # Python flushes stdout again at exit: point it at devnull so that fails quietly too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        return 130
    return code
