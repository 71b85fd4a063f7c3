"""The mapping file format, as pydantic models: the format's reference and its JSON Schema.

Every model forbids unknown keys so a typo (``tranform:``) is a load error with a "did you
mean", not a rule silently ignored. Descriptions here are what editors show on hover through
``silobridge schema mapping``; keep them short and concrete.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from middleware.mapping.functions import REGISTRY

__all__ = ["Capture", "FieldRule", "Lookup", "MappingSpec", "Side", "json_schema"]

XREF_PATTERN = r"^\s*[\w-]+\.[\w-]+\s*->\s*[\w-]+\.[\w-]+\s*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Lookup(_Model):
    """Replace the value by the id it is linked to in the cross-reference store."""

    xref: str = Field(
        description="Link direction 'system.entity -> system.entity'.",
        pattern=XREF_PATTERN,
        examples=["crm.customer -> erp.account"],
    )
    on_missing: Literal["fail", "retry", "default", "passthrough"] = Field(
        "fail",
        description="On a miss: fail (dead-letter), retry (the record is not synced yet), "
        "default (the field's default, or no field without one) or passthrough (keep the "
        "value).",
    )


class FieldRule(_Model):
    """How one target field gets its value. A plain string is short for {from: path}."""

    from_: str | list[str] | None = Field(
        None, alias="from",
        description="Source path (a.b[0].c), relative to the current item inside each; "
        "a list of paths gives a list value (for join, concat, coalesce).",
        examples=["customer.customer_no"],
    )
    value: Any = Field(None, description="A constant.", examples=["CRM"])
    expr: str | None = Field(
        None, description="A CEL expression computing the value.",
        examples=["double(quantity) * unit_price"],
    )
    each: str | None = Field(
        None, description="Source path of a list; `fields` then maps every item (line items).",
        examples=["items"],
    )
    fields: dict[str, FieldRule] | None = Field(
        None, description="Nested rules: a nested target object, or each item with `each`.",
    )
    when: str | None = Field(
        None, description="CEL condition; when false the field takes `else` or is left out.",
        examples=["source.tier == 'gold'"],
    )
    else_: Any = Field(None, alias="else", description="Value when `when` is false.")
    transform: list[str | dict[str, Any]] = Field(
        default_factory=list,
        description="Transforms applied in order; a null value stops the pipeline.",
        examples=[["trim", {"prefix": "CRM-"}]],
    )
    map: dict[str, Any] | None = Field(
        None, description="Value map applied after transforms; a miss takes `default` or fails.",
        examples=[{"won": "CONFIRMED", "lost": "CANCELLED"}],
    )
    lookup: Lookup | None = Field(None, description="Cross-reference lookup, applied last.")
    default: Any = Field(
        None, description="Used as is when the value is missing, null, or a map/lookup miss.",
    )
    required: bool = Field(False, description="A missing value is a mapping error.")
    reverse: bool = Field(
        True, description="false: leave this field out of the derived reverse mapping.",
    )
    description: str | None = Field(None, description="Free text for readers.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"from": data} if isinstance(data, str) else data


class Side(_Model):
    """One end of the mapping."""

    schema_: str | None = Field(
        None, alias="schema",
        description="JSON Schema file, relative to the mapping file, checked before/after.",
        examples=["../schemas/crm/customer.v1.json"],
    )
    system: str | None = Field(None, description="System name, for readers.", examples=["crm"])


class Capture(_Model):
    """Store a link from the target's response, e.g. the account id the ERP assigned."""

    xref: str = Field(description="'source-ns -> target-ns'.", pattern=XREF_PATTERN,
                      examples=["crm.customer -> erp.account"])
    source: str = Field(description="Path of the key in the source payload.")
    response: str = Field(description="Path of the key in the target's response.")


class MappingSpec(_Model):
    """A mapping file: one source payload to one target payload."""

    mapping: str = Field(description="Name used in logs, metrics and errors.",
                         pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    description: str | None = Field(None, description="What the mapping is for.")
    source: Side = Field(default_factory=lambda: Side.model_validate({}),
                         description="The payload read.")
    target: Side = Field(default_factory=lambda: Side.model_validate({}),
                         description="The payload built.")
    fields: dict[str, FieldRule] = Field(description="Target field name (or a.b path) -> rule.")
    capture: list[Capture] = Field(default_factory=list,
                                   description="Links to store from the target's response.")


def json_schema() -> dict[str, Any]:
    """The JSON Schema of mapping files, with every transform name and argument spelled out."""
    schema = MappingSpec.model_json_schema(by_alias=True)
    steps: list[dict[str, Any]] = [
        {"enum": sorted(n for n, t in REGISTRY.items() if t.arg is None)}
    ]
    for name, found in sorted(REGISTRY.items()):
        if found.adapter is not None:
            steps.append({
                "type": "object",
                "description": f"{found.summary} Example: {found.example}",
                "properties": {name: found.adapter.json_schema()},
                "required": [name],
                "additionalProperties": False,
            })
    rule = schema["$defs"]["FieldRule"]
    rule["properties"]["transform"]["items"] = {"anyOf": steps}
    schema["$defs"]["FieldRule"] = {"anyOf": [{"type": "string"}, rule]}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
