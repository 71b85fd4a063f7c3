"""Arguments of the configurable transforms, checked by pydantic when a mapping loads.

Kept apart from the transforms so the registry reads as a list of small functions; each model
doubles as the JSON Schema editors use to autocomplete the argument.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from zoneinfo import ZoneInfo, available_timezones

from pydantic import BaseModel, ConfigDict, Field, field_validator

from middleware.mapping.timefuncs import Ambiguous
from middleware.yamlfile import did_you_mean

__all__ = ["Pad", "RegexReplace", "Replace", "Round", "Zone"]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Pad(_Args):
    width: int = Field(description="Length to pad to.", ge=1)
    fill: str = Field(" ", description="One padding character.", min_length=1, max_length=1)
    side: Literal["left", "right"] = Field("left", description="Where the padding goes.")


class Replace(_Args):
    old: str = Field(description="Text to replace (every occurrence).", min_length=1)
    new: str = Field(description="Replacement text.")


class RegexReplace(_Args):
    pattern: re.Pattern[str] = Field(description="Python regular expression.")
    repl: str = Field(description="Replacement; \\1 or \\g<name> refer to groups.")


class Round(_Args):
    digits: int = Field(description="Digits after the decimal point.", ge=0)
    mode: Literal["half_even", "half_up"] = Field("half_even", description="Tie-breaking.")


class Zone(_Args):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: ZoneInfo | None = Field(None, alias="from", description="Zone of naive input times.")
    to: ZoneInfo = Field(description="IANA zone to express the time in, e.g. Asia/Shanghai.")
    ambiguous: Ambiguous = Field("earlier", description="Choice in a DST fold.")

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _zone(cls, name: Any) -> Any:
        if isinstance(name, str):
            try:
                return ZoneInfo(name)
            except (ValueError, OSError, KeyError):
                raise ValueError(f"unknown time zone {name!r}"
                                 f"{did_you_mean(name, available_timezones())}") from None
        return name
