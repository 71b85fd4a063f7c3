"""A route's two-way sync options: per-subject ordering, stale updates, echo suppression.

Kept apart from ``models.py`` (which re-exports them) because they form one concept: what a route
needs so that two routes over the same entity in opposite directions stay consistent. See
``docs/two-way.md`` for why the mechanism is a sequence in the shared store.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from middleware.config.strict import Strict as _Strict

__all__ = ["ConflictConfig", "EchoConfig", "OriginMarker", "SyncConfig"]

_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$")
_NAMESPACE = re.compile(r"^[a-z0-9_-]+\.[a-z0-9_-]+$")


def _check_path(value: str | None, what: str) -> str | None:
    if value is not None and not _PATH.match(value):
        raise ValueError(f"{what} {value!r} is not a dotted field path into the event's data "
                         f"(e.g. 'customer_no' or 'meta.version')")
    return value




class OriginMarker(_Strict):
    """A field the source system sets on changes an integration user made: an event whose
    field holds one of ``values`` was written by silobridge and is an echo."""

    field: str = Field(
        description="Dotted path into the event's data holding the origin of the change.",
        examples=["changeSource", "LastModifiedById", "InitiatingUserId"],
    )
    values: list[str] = Field(
        min_length=1,
        description="Values that mean 'written by silobridge' (the integration user's id, "
        "HubSpot's INTEGRATION source, ...).",
        examples=[["INTEGRATION"], ["005xx000001SvXkAAK"]],
    )

    @field_validator("field")
    @classmethod
    def _path(cls, value: str) -> str:
        _check_path(value, "origin field")
        return value


class EchoConfig(_Strict):
    """Echo suppression for a pair of routes over one entity in opposite directions.

    The route remembers a fingerprint of every payload it wrote into its target (per record,
    for ``ttl`` seconds); the paired route, reading that system's change events, recognises a
    change that matches a fingerprint as the echo of that write and does not write it back.
    An ``origin`` marker, where the source system offers one, recognises echoes without it.
    """

    pair: str = Field(
        description="Name of the route in the opposite direction over the same entity; the "
        "two must name each other.",
        examples=["customers-erp-to-crm"],
    )
    fields: list[str] = Field(
        min_length=1,
        description="Fields of this route's target payload whose values make the fingerprint "
        "(dotted paths). The paired route compares the same fields of the change events it "
        "reads, so list the fields the target reports back unchanged.",
        examples=[["name", "email", "phone"]],
    )
    key: str | None = Field(
        None,
        description="Dotted path into the target payload of the record's key in the target "
        "system; unset: the event's subject (both systems use the same key).",
        examples=["account_no"],
    )
    ttl: float = Field(
        600.0, gt=0, le=7 * 86400,
        description="Seconds a write's fingerprint is remembered; an echo later than that "
        "flows again (harmless: it writes what is already there).",
    )
    origin: OriginMarker | None = Field(
        None,
        description="Where this route's source marks changes made by the integration user.",
    )

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: list[str]) -> list[str]:
        for item in value:
            _check_path(item, "echo field")
        return value

    @field_validator("key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        return _check_path(value, "echo key")


class ConflictConfig(_Strict):
    """What wins when a record was changed in both systems within ``window`` seconds of each
    other (by source time). Needs ``echo`` (the pair of routes and the record key)."""

    rule: Literal["latest-wins", "system-wins", "fields"] = Field(
        description="'latest-wins': the change with the later source time wins; 'system-wins': "
        "the system named in 'wins'; 'fields': each field belongs to one system, and changes "
        "of the other system to it are ignored (the rest applied).",
    )
    wins: str | None = Field(
        None,
        description="For 'system-wins': the winning system, as the first word of the event "
        "type ('crm', 'erp').",
        examples=["crm"],
    )
    owned_by_target: list[str] = Field(
        default_factory=list,
        description="For 'fields': fields of this route's target payload that the target "
        "system owns; this route never writes them (dotted paths).",
        examples=[["price", "credit_limit"]],
    )
    window: float = Field(
        300.0, gt=0, le=30 * 86400,
        description="Seconds between the two changes' source times within which they "
        "conflict.",
    )

    @model_validator(mode="after")
    def _rule_options(self) -> ConflictConfig:
        if self.rule == "system-wins" and not self.wins:
            raise ValueError("rule 'system-wins' needs 'wins: <system>' (e.g. crm)")
        if self.rule == "fields" and not self.owned_by_target:
            raise ValueError("rule 'fields' needs 'owned_by_target': the target's fields")
        for item in self.owned_by_target:
            _check_path(item, "owned field")
        return self


class SyncConfig(_Strict):
    """Per-subject ordering, stale updates and echo suppression for one route."""

    subject: str | None = Field(
        None,
        description="Dotted path into the event's data of the subject (the record's business "
        "key); unset: the envelope's 'subject' attribute.",
        examples=["customer_no"],
    )
    version: str | None = Field(
        None,
        description="Dotted path into the event's data of the record's version (an integer, "
        "or an ISO 8601 time such as Salesforce's SystemModstamp); unset: the envelope's "
        "'time'.",
        examples=["version", "SystemModstamp"],
    )
    ordering: Literal["none", "subject"] = Field(
        "none",
        description="'subject': events of one subject reach the target in version order, also "
        "when an earlier one waits in a retry tier, across replicas (PostgreSQL store) and "
        "crashes; other subjects are not held back. Needs a subject and stale 'drop' for a "
        "strict order (with 'deliver' an older event that comes late is still written).",
    )
    stale: Literal["drop", "deliver"] = Field(
        "drop",
        description="An event older than the version last applied for its subject: 'drop' "
        "(acked, outcome 'stale') or 'deliver' anyway (e.g. to replay history on purpose).",
    )
    hold_delay: float = Field(
        0.5, gt=0, le=60,
        description="Seconds a held event (an earlier one of its subject is in flight or in a "
        "retry tier) waits in the route's hold queue before it is checked again.",
    )
    claim_ttl: float = Field(
        60.0, gt=0, le=3600,
        description="Seconds a subject stays claimed by the event being delivered (plus its "
        "retry delay while it waits in a retry tier): after a crash, the subject moves again "
        "at most this long after the claim was last renewed. Keep it above the target timeout.",
    )
    echo: EchoConfig | None = Field(None, description="Echo suppression with a paired route.")
    conflict: ConflictConfig | None = Field(
        None, description="Conflict rule between this route and its echo pair.")

    @model_validator(mode="after")
    def _conflict_needs_a_pair(self) -> SyncConfig:
        if self.conflict is not None and self.echo is None:
            raise ValueError("sync.conflict needs sync.echo: the paired route and the record "
                             "key are set there")
        return self

    @field_validator("subject", "version")
    @classmethod
    def _paths(cls, value: str | None) -> str | None:
        return _check_path(value, "path")
