"""Config of enrich steps (``routes[*].enrich``): call a system, merge its answer into the payload.

A webhook that carries only an id (HubSpot's ``contact.creation``), a Dynamics 365 message that
dropped its entity images, a NAV page that wants the record's ``Key`` before an ``Update``: each
needs a call to a system in the middle of the route. A step names a system of the top-level
``systems`` section, builds its request from the envelope with templates, and puts (part of) the
answer into the payload::

    enrich:
      - system: hubspot                     # a REST system: a GET below its base_url
        get: /crm/v3/objects/contacts/{payload.objectId}?properties=email,firstname
        into: contact                       # the answer lands at payload.contact
        cache: {ttl: 60, max_entries: 10000}
      - system: nav                         # a SOAP system: an operation with arguments
        call: {operation: Read, arguments: {No: "{payload.Customer.No}"}}
        select: Key                         # only this part of the answer
        into: Customer.Key
        after_mapping: true                 # on the mapped payload, before delivery

Templates are checked here, so a misspelt placeholder is a config error with its line, not a
dead letter per message. What a system is (its URL, auth, TLS, timeouts) is its adapter's
model; whether a step fits its system (``get`` for REST, ``call`` for SOAP) is checked by the
loader, which knows both.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator, model_validator

from middleware.config.strict import Strict as _Strict
from middleware.envelope import Envelope
from middleware.yamlfile import did_you_mean

__all__ = ["EnrichCache", "EnrichStep", "SoapCall", "placeholder_problems"]

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_ROOTS = ("envelope", "payload")
_PATH = re.compile(r"^[A-Za-z0-9_@$-]+(\.[A-Za-z0-9_@$-]+)*$")
_INTO = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$")
ENVELOPE_ATTRIBUTES = tuple(name for name in Envelope.model_fields if name != "data")




def placeholder_problems(template: str) -> list[str]:
    """What is wrong with the ``{envelope.x}`` / ``{payload.a.b}`` placeholders of a template.

    Every ``{...}`` must be one of the two; a brace pair that is neither is almost always a
    typo (``{paylaod.id}``), which would otherwise go out literally on every request.
    """
    problems = []
    for match in _PLACEHOLDER.finditer(template):
        root, dot, path = match.group(1).strip().partition(".")
        if root not in _ROOTS:
            problems.append(f"{match.group(0)} is no placeholder{did_you_mean(root, _ROOTS)}; "
                            f"write {{envelope.<attribute>}} or {{payload.<path>}}")
        elif not dot or not _PATH.match(path):
            problems.append(f"{match.group(0)} needs a dotted path after '{root}.', e.g. "
                            f"{{{root}.{'subject' if root == 'envelope' else 'customer.id'}}}")
        elif root == "envelope" and path not in ENVELOPE_ATTRIBUTES:
            problems.append(f"{match.group(0)}: the envelope has no attribute {path!r}"
                            f"{did_you_mean(path, ENVELOPE_ATTRIBUTES)}; it has "
                            f"{', '.join(ENVELOPE_ATTRIBUTES)} (its payload is "
                            f"{{payload.<path>}})")
    if template.count("{") != template.count("}"):
        problems.append("unbalanced braces: every placeholder is {envelope.x} or {payload.x}")
    return problems


def _strings(value: Any) -> list[str]:
    """Every string inside nested arguments (the templates to check)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


class SoapCall(_Strict):
    """A SOAP operation and its arguments, for a step on a ``soap`` system."""

    operation: str = Field(description="WSDL operation of the system to call.",
                           examples=["Read"])
    arguments: dict[str, Any] = Field(
        default_factory=dict,
        description="Arguments by name; strings are templates. A string that is one "
        "placeholder alone keeps the value's type (a number stays a number).",
        examples=[{"No": "{payload.customer_no}"}],
    )

    @field_validator("arguments")
    @classmethod
    def _templates(cls, value: dict[str, Any]) -> dict[str, Any]:
        problems = [problem for text in _strings(value) for problem in placeholder_problems(text)]
        if problems:
            raise ValueError("; ".join(problems))
        return value


class EnrichCache(_Strict):
    """Answers kept for a short while, per request (the rendered URL or operation + arguments)."""

    ttl: float = Field(gt=0, le=86400, description="Seconds an answer is reused.",
                       examples=[60])
    max_entries: int = Field(
        1000, ge=1, le=1_000_000,
        description="Answers kept at most; the least recently used goes first.")
    max_bytes: int = Field(
        8 * 1_048_576, ge=1024, le=1024 * 1_048_576,
        description="Size the kept answers may take together (request and answer as JSON); "
        "the least recently used go first, and a larger answer is not kept.")


class EnrichStep(_Strict):
    """One call to a system whose answer is merged into the payload."""

    system: str = Field(description="Name of an entry of the top-level 'systems' section.",
                        examples=["hubspot"])
    get: str | None = Field(
        None, description="For a rest system: path and query below its base_url, a template "
        "({envelope.subject}, {payload.a.b}; each value URL-encoded).",
        examples=["/crm/v3/objects/contacts/{payload.objectId}?properties=email"],
    )
    call: SoapCall | None = Field(None, description="For a soap system: the operation to call.")
    into: str = Field(
        description="Dotted path in the payload where the answer goes (objects on the way are "
        "created; an existing value there is replaced).", examples=["contact"],
    )
    select: str | None = Field(
        None, description="Dotted path inside the answer to keep instead of all of it.",
        examples=["properties"],
    )
    after_mapping: bool = Field(
        False, description="Run on the mapped payload, just before delivery, instead of on "
        "the source payload before the mapping.",
    )
    required: bool = Field(
        True, description="An empty answer (or nothing at 'select') dead-letters the message; "
        "false leaves 'into' unset and goes on.",
    )
    cache: EnrichCache | None = Field(
        None, description="Reuse answers for the same request for a short while; none by "
        "default (every message asks).",
    )

    @field_validator("get")
    @classmethod
    def _get(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("/"):
            raise ValueError("start the path with '/': it is appended to the system's base_url")
        problems = placeholder_problems(value)
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("into")
    @classmethod
    def _into(cls, value: str) -> str:
        if not _INTO.match(value):
            raise ValueError("use a dotted path of names (letters, digits, _ and -), e.g. "
                             "'contact' or 'Customer.Key'")
        return value

    @field_validator("select")
    @classmethod
    def _select(cls, value: str | None) -> str | None:
        if value is not None and not _PATH.match(value):
            raise ValueError("use a dotted path (list items by index: 'results.0.id')")
        return value

    @model_validator(mode="after")
    def _one_request(self) -> EnrichStep:
        if (self.get is None) == (self.call is None):
            raise ValueError("set either 'get' (a rest system) or 'call' (a soap system)")
        return self
