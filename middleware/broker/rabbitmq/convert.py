"""Translation between the project's ``Properties`` and pika's ``BasicProperties``.

The only place the two meet: everything above the RabbitMQ implementation sees ``Properties``.
"""

from __future__ import annotations

from dataclasses import fields

import pika

from middleware.broker.properties import Properties

__all__ = ["from_pika", "to_pika"]

_NAMES = tuple(f.name for f in fields(Properties) if f.name != "headers")


def to_pika(properties: Properties) -> pika.BasicProperties:
    values = {name: getattr(properties, name) for name in _NAMES}
    return pika.BasicProperties(headers=dict(properties.headers) or None, **values)


def from_pika(properties: pika.BasicProperties) -> Properties:
    values = {name: getattr(properties, name, None) for name in _NAMES}
    return Properties(headers=dict(properties.headers or {}), **values)
