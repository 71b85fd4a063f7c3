"""The command groups of the CLI, in help order."""

from middleware.cli import dlq, run, send

__all__ = ["MODULES"]

MODULES = [run, send, dlq]
