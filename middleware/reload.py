"""Mapping reloads: the file watcher. Mapping files are polled for changes: cheap (a stat per
file), and it works the same on every filesystem and in containers with ConfigMap volumes. A
change is loaded once the file has settled (see ``MappingSet.reload``); a broken edit keeps the
previous mapping and is logged once. The daemon runs ``reload`` on a ``Periodic`` thread."""

from __future__ import annotations

import structlog

from middleware.mapping import MappingSet

__all__ = ["MappingReloads"]

log = structlog.get_logger(__name__)


class MappingReloads:
    def __init__(self, mappings: MappingSet) -> None:
        self._mappings = mappings

    def reload(self) -> None:
        for problem in self._mappings.reload(settle=True):
            log.error("mapping reload rejected", problem=str(problem))
