"""Enrich steps: a route calls a system (REST GET, SOAP operation) and merges the answer into
the payload, before the mapping or just before delivery.

    contract.py   System and StepCall, what adapters provide (``AdapterSpec.system``)
    chain.py      the steps of a route chained through Futures around the mapping
    cache.py      short-lived answers per request (TTL, bounded)
    systems.py    the process's systems, started once and shared by routes

The step's config model is ``middleware.config.enrich``; the pipeline's hook is one call of
``Enrichment.process`` (``middleware.pipeline``).
"""

from middleware.enrich.cache import AnswerCache
from middleware.enrich.chain import Enrichment, Step
from middleware.enrich.contract import Prepared, StepCall, System
from middleware.enrich.systems import Systems

__all__ = ["AnswerCache", "Enrichment", "Prepared", "Step", "StepCall", "System", "Systems"]
