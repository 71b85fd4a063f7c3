"""The configured systems of one process, started once and shared by every route's steps.

A system is built by its adapter (``AdapterSpec.system``, found through the registry like
targets are) and started before the workers, so a missing secret, an unreadable certificate or
a WSDL without the operation a step calls stops the start. Only systems some route's steps name
are started: an entry no route uses costs no connections.
"""

from __future__ import annotations

from middleware import plugins
from middleware.adapter import AdapterContext
from middleware.config.models import Config, RouteConfig
from middleware.enrich.chain import Enrichment, Step
from middleware.enrich.contract import System

__all__ = ["Systems"]


class Systems:
    def __init__(self, config: Config) -> None:
        self._config = config
        self._started: dict[str, System] = {}

    def start(self, context: AdapterContext) -> None:
        used = {step.system for route in self._config.routes for step in route.enrich}
        for name in sorted(used):
            section = self._config.systems[name]  # the loader checked every name
            spec = plugins.get(section.type)
            assert spec is not None and spec.system is not None  # checked by the loader
            system = spec.system(section)
            system.start(context)
            self._started[name] = system

    def enrichment(self, route: RouteConfig, index: int) -> Enrichment | None:
        """The route's steps bound to their systems; None for a route without steps."""
        if not route.enrich:
            return None
        return Enrichment([
            Step(step, self._started[step.system].bind(step, f"routes.{index}.enrich.{n}"),
                 n + 1, route.name)
            for n, step in enumerate(route.enrich)])

    def close(self) -> None:
        for system in self._started.values():
            system.close()
        self._started.clear()
