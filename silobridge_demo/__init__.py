"""The demo: ``silobridge demo`` and ``silobridge demo crm`` (the ERP is ``demo erp``, from the
SOAP adapters). Registered like an adapter package, with commands only, so the core CLI finds
it through the entry point without importing ``adapters``."""

from adapters.demo.cli import register_commands
from middleware.plugins import AdapterSpec, register

__all__: list[str] = []

register(AdapterSpec("demo", commands=register_commands))
