"""The command groups of the CLI, in help order."""

from middleware.cli import (
    completion,
    dlq,
    mapping,
    run,
    send,
    status,
    store,
    topology,
    users,
    xref,
)

__all__ = ["MODULES"]

MODULES = [run, topology, send, dlq, mapping, status, store, xref, users, completion]
