"""The config file's JSON Schema and its Markdown reference, both made from the models.

The core models leave ``inbound[*]``, ``routes[*].target``, ``audit`` and ``systems`` open
(each adapter validates its own section), so the schema for editors splices every registered
adapter's model in as a ``oneOf`` on ``type``. ``docs/config.md`` is ``markdown()`` written to
a file; a test compares the two so the reference cannot drift from the code (regenerate with
``python -m middleware.config.reference > docs/config.md``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from middleware import plugins
from middleware.config import models
from middleware.config.models import Config

__all__ = ["json_schema", "markdown"]

_REF = "#/$defs/{model}"


def _adapters(direction: str) -> list[tuple[str, type[BaseModel]]]:
    found = []
    for name in plugins.known_types():
        spec = plugins.get(name)
        model = None if spec is None else getattr(spec, f"{direction}_config")
        if model is not None:
            found.append((name, model))
    return found


def json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of a whole config file, adapters included."""
    schema = Config.model_json_schema(ref_template=_REF)
    defs: dict[str, Any] = schema.setdefault("$defs", {})

    def one_of(direction: str) -> dict[str, Any]:
        choices = []
        for _name, model in _adapters(direction):
            sub = model.model_json_schema(ref_template=_REF)
            defs.update(sub.pop("$defs", {}))
            defs[model.__name__] = sub
            choices.append({"$ref": _REF.format(model=model.__name__)})
        return {"oneOf": choices}

    schema["properties"]["inbound"]["items"] = one_of("inbound")
    defs["RouteConfig"]["properties"]["target"] = one_of("outbound")
    schema["properties"]["systems"]["additionalProperties"] = one_of("system")
    audit = schema["properties"]["audit"]
    audit["anyOf"] = [*one_of("audit")["oneOf"], {"type": "null"}]
    del defs["AdapterConfig"]  # every use was replaced by the adapters' own models
    _allow_placeholders(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "silobridge config"
    return schema


_PLACEHOLDER = {"type": "string", "pattern": r"\$\{[^}]+\}",
                "description": "${VAR} or ${VAR:-default}, replaced from the environment"}


_PLAIN = {"type", "title", "description", "default", "examples"}


def _allow_placeholders(node: Any) -> None:
    """Any value may be written as or with ``${VAR:-default}`` (the loader replaces it before
    validating), so the editor schema accepts a placeholder wherever a number, a boolean or a
    constrained string stands."""
    if isinstance(node, dict):
        for value in node.values():
            _allow_placeholders(value)
        constrained = node.get("type") == "string" and bool(set(node) - _PLAIN)
        if node.get("type") in ("integer", "number", "boolean") or constrained:
            original = {key: node.pop(key) for key in list(node)
                        if key not in ("title", "description", "default")}
            node["anyOf"] = [original, _PLACEHOLDER]
    elif isinstance(node, list):
        for value in node:
            _allow_placeholders(value)


def _type(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    for key in ("anyOf", "oneOf"):
        if key in prop:
            return " or ".join(_type(p) for p in prop[key] if p is not _PLACEHOLDER)
    if "const" in prop:
        return repr(prop["const"])
    if "enum" in prop:
        return " | ".join(repr(v) for v in prop["enum"])
    if prop.get("type") == "array":
        return f"list of {_type(prop.get('items', {}))}"
    return str(prop.get("type", "any"))


def _default(prop: dict[str, Any], required: bool) -> str:
    if required:
        return "required"
    return f"`{prop['default']!r}`" if "default" in prop else ""


def _table(name: str, schema: dict[str, Any]) -> list[str]:
    lines = [f"### {name}", ""]
    if schema.get("description"):
        lines += [" ".join(schema["description"].split()), ""]
    lines += ["| field | type | default | description |", "|---|---|---|---|"]
    required = set(schema.get("required", []))
    for field, prop in schema.get("properties", {}).items():
        text = " ".join(prop.get("description", "").split()).replace("|", "\\|")
        kind = _type(prop).replace("|", "\\|")
        default = _default(prop, field in required).replace("|", "\\|")
        lines.append(f"| `{field}` | {kind} | {default} | {text} |")
    return [*lines, ""]


def markdown() -> str:
    """Every config section and adapter model as a table, in a stable order."""
    schema = json_schema()
    defs = schema["$defs"]
    lines = ["# Configuration reference", "",
             "Generated from the config models by `python -m middleware.config.reference`; "
             "do not edit by hand. `silobridge schema config` prints the same as JSON Schema "
             "for editors.", "", "## The file", ""]
    lines += _table("top level", schema)
    adapter_models = {model.__name__: (direction, name)
                      for direction in ("inbound", "outbound", "audit", "system")
                      for name, model in _adapters(direction)}
    core = [name for name in models.__all__ if name in defs]
    lines += ["## Sections", ""]
    for name in core:
        lines += _table(name, defs[name])
    lines += ["## Adapters", ""]
    for name, (direction, adapter_type) in sorted(adapter_models.items(),
                                                 key=lambda item: (item[1], item[0])):
        lines += _table(f"{name} (`type: {adapter_type}`, {direction})", defs[name])
    lines += ["## Parts of adapter sections", ""]
    for name in sorted(set(defs) - set(core) - set(adapter_models)):
        lines += _table(name, defs[name])
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
