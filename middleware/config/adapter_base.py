"""The base of every adapter's config model, beside the other config models.

It lives here, not in ``middleware.adapter``, so the config models import no adapter contract:
that import closed a circle (config -> adapter -> broker -> config) only ``TYPE_CHECKING`` kept
alive. ``middleware.adapter`` re-exports it for adapters.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AdapterConfig"]


class AdapterConfig(BaseModel):
    """Base of every adapter's config model; ``type`` selects the adapter in the registry.

    The core validates only ``type`` (and ``name`` for inbound adapters); the rest is validated by
    the adapter's own subclass, which sets ``extra="forbid"``.
    """

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="Adapter type as registered, e.g. 'amqp', 'rest', 'soap'.")
