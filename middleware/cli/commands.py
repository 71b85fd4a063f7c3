"""The command groups of the CLI, in help order."""

from middleware.cli import dlq, mapping, run, send

__all__ = ["MODULES"]

MODULES = [run, send, dlq, mapping]
