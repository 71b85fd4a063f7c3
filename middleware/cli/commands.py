"""The command groups of the CLI, in help order."""

from middleware.cli import dlq, mapping, run, send, status, store

__all__ = ["MODULES"]

MODULES = [run, send, dlq, mapping, status, store]
