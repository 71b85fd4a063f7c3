"""Request bodies and query parameters of the admin API: pydantic models (also the OpenAPI
schemas) and the readers that turn bad input into 400/413/422 answers naming the field."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.requests import Request

from middleware.console.api import ApiError
from middleware.console.rbac import Role

__all__ = ["BODIES", "EditReplayBody", "LoginBody", "MappingPreviewBody", "MappingSaveBody",
           "MappingTestBody", "PurgeBody", "ReplayBody", "TokenBody",
           "UserAddBody", "UserUpdateBody", "XrefFixBody", "XrefUnlinkBody", "query_int",
           "query_text", "read"]

MAX_BODY = 1_048_576
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class LoginBody(_Body):
    name: str = Field(min_length=1, max_length=64, description="User name.")
    password: str = Field(min_length=1, max_length=1024, description="Password.")


class ReplayBody(_Body):
    ids: list[str] | None = Field(None, max_length=1000,
                                  description="Envelope ids to replay (at most 1000).")
    all: bool = Field(False, description="Replay every dead letter of the route instead.")

    @model_validator(mode="after")
    def _one(self) -> ReplayBody:
        if (self.ids is None) == (not self.all):
            raise ValueError("give either 'ids' (a list) or 'all': true")
        return self


class EditReplayBody(_Body):
    event: dict[str, Any] = Field(
        description="The corrected CloudEvents envelope; its id must stay the dead letter's.")


class MappingPreviewBody(_Body):
    yaml: str | None = Field(None, max_length=500_000,
                             description="A candidate mapping text; none: the saved file.")
    input: dict[str, Any] = Field(description="A source payload to map.")


class MappingTestBody(_Body):
    yaml: str | None = Field(None, max_length=500_000,
                             description="A candidate mapping text; none: the saved file.")


class LookupBody(_Body):
    xref: str = Field(min_length=1, max_length=255,
                      description="Link direction, e.g. 'crm.customer -> erp.account'.")
    on_missing: Literal["fail", "retry", "default", "passthrough"] = Field(
        "fail", description="What a miss does.")


class LinkBody(_Body):
    target: str = Field(min_length=1, max_length=255, description="Target field name.")
    source: str = Field(min_length=1, max_length=255, description="Source path, e.g. a.b[0].c.")
    transform: list[str | dict[str, Any]] | None = Field(
        None, max_length=50, description="Transform steps in order, as in the YAML (e.g. "
        "'trim' or {'prefix': 'CRM-'}); [] removes them; none: keep the rule's.")
    map: dict[str, Any] | None = Field(
        None, max_length=1000, description="Value map (source value -> target value); {} "
        "removes it; none: keep the rule's.")
    lookup: LookupBody | None = Field(None, description="Cross-reference lookup to set.")
    remove_lookup: bool = Field(False, description="Remove the rule's lookup.")
    when: str | None = Field(None, max_length=2000, description="CEL condition; '' removes it.")
    else_: Any = Field(None, alias="else", description="Value when the condition is false.")


class MappingSaveBody(_Body):
    yaml: str | None = Field(None, max_length=500_000, description="The whole new text.")
    links: list[LinkBody] | None = Field(None, max_length=200,
                                         description="Links to write into the saved text.")

    @model_validator(mode="after")
    def _one(self) -> MappingSaveBody:
        if (self.yaml is None) == (self.links is None):
            raise ValueError("give either 'yaml' (the whole text) or 'links'")
        return self


class PurgeBody(_Body):
    confirm: str = Field(max_length=64, description="The route's name, to confirm the purge.")


class XrefFixBody(_Body):
    ns_a: str = Field(min_length=1, max_length=255, description="Namespace, e.g. crm.customer.")
    key_a: str = Field(min_length=1, max_length=255, description="Key in ns_a.")
    ns_b: str = Field(min_length=1, max_length=255, description="Other namespace.")
    key_b: str = Field(min_length=1, max_length=255, description="Key in ns_b.")

    @model_validator(mode="after")
    def _two(self) -> XrefFixBody:
        if self.ns_a == self.ns_b:
            raise ValueError("a link joins two different namespaces")
        return self


class XrefUnlinkBody(_Body):
    namespace: str = Field(min_length=1, max_length=255,
                           description="Namespace of the record, e.g. crm.customer.")
    key: str = Field(min_length=1, max_length=255, description="Key in namespace.")
    other: str = Field(min_length=1, max_length=255,
                       description="The namespace it links to, e.g. erp.account.")


class UserAddBody(_Body):
    name: str = Field(pattern=_NAME, description="Login name.")
    role: Role = Field(description="viewer, operator, integrator or admin.")
    routes: list[str] = Field(default_factory=list, max_length=200,
                              description="Routes the user may see; empty: all.")
    password: str | None = Field(None, min_length=12, max_length=1024,
                                 description="At least 12 characters; none: tokens only.")


class UserUpdateBody(_Body):
    role: Role | None = Field(None, description="New role.")
    routes: list[str] | None = Field(None, max_length=200, description="New route scope.")
    password: str | None = Field(None, min_length=12, max_length=1024,
                                 description="New password (ends nothing else).")


class TokenBody(_Body):
    label: str = Field(min_length=1, max_length=100, description="What the token is for.")


BODIES: dict[str, type[BaseModel]] = {
    "login": LoginBody, "replay": ReplayBody, "edit_replay": EditReplayBody,
    "purge": PurgeBody, "xref_fix": XrefFixBody, "xref_unlink": XrefUnlinkBody,
    "user_add": UserAddBody,
    "user_update": UserUpdateBody, "token_add": TokenBody,
    "mapping_preview": MappingPreviewBody, "mapping_test": MappingTestBody,
    "mapping_save": MappingSaveBody,
}
"""Which endpoint takes which body (for the OpenAPI document)."""

M = TypeVar("M", bound=BaseModel)


async def read(request: Request, model: type[M]) -> M:
    """The request's JSON body as ``model``; errors name the field, never echo the input."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise ApiError(413, f"the body is larger than {MAX_BODY} bytes")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise ApiError(413, f"the body is larger than {MAX_BODY} bytes")
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"the body is not JSON ({exc}); send application/json") from None
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        problems = [{"field": ".".join(str(p) for p in e["loc"]) or "(body)", "problem": e["msg"]}
                    for e in exc.errors(include_input=False, include_url=False)]
        raise ApiError(422, "the body is invalid: " + "; ".join(
            f"{p['field']}: {p['problem']}" for p in problems), details=problems) from None


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"query parameter {name!r} must be a whole number") from None
    if not low <= value <= high:
        raise ApiError(400, f"query parameter {name!r} must be between {low} and {high}")
    return value


def query_text(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is not None and len(value) > 255:
        raise ApiError(400, f"query parameter {name!r} is longer than 255 characters")
    return value or None
