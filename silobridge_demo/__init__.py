"""The live demo: ``silobridge demo`` with its CRM, SOAP ERP and warehouse, and the config they
run on, shipped as package data.

A package of its own, outside ``adapters/``, so that its SOAP server library (spyne) is needed
only by those who install the ``demo`` extra. It registers through the ``silobridge.adapters``
entry point with commands only; this module and ``cli`` import nothing from spyne, so the core
CLI still starts where the extra is missing and ``silobridge demo`` then says how to install it.
"""

from middleware.plugins import AdapterSpec, register
from silobridge_demo.cli import register_commands

__all__: list[str] = []

register(AdapterSpec("demo", commands=register_commands))
