"""Load a config file and report every problem at once, each with file, line and path.

Three passes: the core models, then each adapter section against its adapter's own model, then
every mapping the routes refer to; on request a fourth reads the secrets of the given sections
(``validate`` and ``run`` ask, ``dlq`` and ``status`` need no adapter secrets). Problems from all
passes are collected before raising, so an integrator fixes a file in one round instead of one
error per run.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from middleware import plugins
from middleware.config.adapter_base import AdapterConfig
from middleware.config.models import Config
from middleware.errors import ConfigError, Problem
from middleware.secrets import absolutise_secret_files, secret_problems
from middleware.yamlfile import Located, did_you_mean, load_yaml, quote_hint

__all__ = ["SECTIONS", "LoadedConfig", "load_config", "problems_from"]


@dataclass
class LoadedConfig:
    """A valid config plus where it came from (relative paths resolve against ``base_dir``)."""

    config: Config
    path: Path

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, relative: str) -> Path:
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else self.base_dir / candidate


SECTIONS = ("inbound", "routes", "audit", "systems")
"""The config sections whose adapters hold secrets: the ingress role's and the workers'."""


def load_config(path: str | Path, secrets: Sequence[str] = ()) -> LoadedConfig:
    """Parse and validate; raise ConfigError listing every problem found.

    ``secrets`` names the sections (of ``SECTIONS``) whose secrets must be readable now: every
    unset variable and unreadable file is a problem, with the line of its ``*_env``/``*_file``.
    """
    located = load_yaml(path)
    data = located.data if located.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError([located.problem((), "the config file must be a mapping of sections")])
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_from(exc, located, Config)) from exc
    loaded = LoadedConfig(config, Path(path).absolute())
    problems = (_adapter_pass(config, located) + _enrich_pass(config, located)
                + _mapping_pass(loaded, located))
    absolutise_secret_files(config, SECTIONS, loaded.base_dir)
    problems += secret_problems(config, secrets, located)
    if problems:
        raise ConfigError(problems)
    return loaded


def problems_from(
    exc: ValidationError,
    located: Located,
    model: type[BaseModel],
    prefix: Sequence[str | int] = (),
) -> list[Problem]:
    """Turn pydantic errors into Problems; unknown keys get a 'did you mean'."""
    problems = []
    for error in exc.errors():
        loc = _without_union_tags(tuple(error["loc"]), located, tuple(prefix))
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            known = _fields_at(model, loc[:-1])
            message = f"unknown key {loc[-1]!r}{did_you_mean(str(loc[-1]), known)}"
        elif error["type"] == "missing":
            message = "required key is missing"
        else:
            message += quote_hint(error)
        problems.append(located.problem((*prefix, *loc), message))
    return problems


def _without_union_tags(
    loc: tuple[str | int, ...], located: Located, prefix: tuple[str | int, ...]
) -> tuple[str | int, ...]:
    """Drop the parts pydantic adds for (discriminated) unions, e.g. 'github' in
    ``auth.github.secret_env``: a non-final name that is no key of the YAML node it is under,
    or a final one that is the node's discriminator value (a model validator's error)."""
    kept: list[str | int] = []
    for n, part in enumerate(loc):
        here = (*prefix, *kept)
        if (isinstance(part, str) and here in located.lines
                and (*here, part) not in located.lines
                and (n < len(loc) - 1 or _is_tag(located, here, part))):
            continue
        kept.append(part)
    return tuple(kept)


def _is_tag(located: Located, path: tuple[str | int, ...], word: str) -> bool:
    """Whether the YAML mapping at path has word as a value (``scheme: hmac``)."""
    node: Any = located.data
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return False
    return isinstance(node, dict) and word in node.values()


def _fields_at(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """Field names of the model found by following loc through nested models and lists."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = _model_in(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    """The BaseModel inside Optional[...] or list[...], if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) is typing.Annotated:
        return _model_in(typing.get_args(annotation)[0])
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) in (
        typing.Union,
        list,
    ):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _adapter_pass(config: Config, located: Located) -> list[Problem]:
    problems: list[Problem] = []
    for i, inbound in enumerate(config.inbound):
        typed = _validate_adapter(inbound, "inbound", ("inbound", i), located, problems)
        if typed is not None:
            config.inbound[i] = typed
    for i, route in enumerate(config.routes):
        typed = _validate_adapter(route.target, "outbound", ("routes", i, "target"), located,
                                  problems)
        if typed is not None:
            route.target = typed
    if config.audit is not None:
        typed = _validate_adapter(config.audit, "audit", ("audit",), located, problems)
        if typed is not None:
            config.audit = typed
    for name, system in config.systems.items():
        typed = _validate_adapter(system, "system", ("systems", name), located, problems)
        if typed is not None:
            config.systems[name] = typed
    return problems


def _enrich_pass(config: Config, located: Located) -> list[Problem]:
    """Every step names a configured system and asks it the way its type answers."""
    problems: list[Problem] = []
    for i, route in enumerate(config.routes):
        for j, step in enumerate(route.enrich):
            where = ("routes", i, "enrich", j)
            system = config.systems.get(step.system)
            if system is None:
                known = sorted(config.systems)
                problems.append(located.problem((*where, "system"), (
                    f"no system {step.system!r}{did_you_mean(step.system, known)}; "
                    f"known: {', '.join(known) or 'none'} (add it under the top-level "
                    f"'systems' section)")))
                continue
            wants = getattr(system, "STEP", None)  # set by each system's config model
            has = "get" if step.get is not None else "call"
            if wants is not None and wants != has:
                problems.append(located.problem((*where, has), (
                    f"system {step.system!r} is of type {system.type!r}, which takes "
                    f"'{wants}', not '{has}'")))
    return problems


def _validate_adapter(
    section: AdapterConfig,
    direction: str,
    where: tuple[str | int, ...],
    located: Located,
    problems: list[Problem],
) -> AdapterConfig | None:
    spec = plugins.get(section.type)
    model = None if spec is None else getattr(spec, f"{direction}_config")
    if model is None:
        choices = [
            t for t in plugins.known_types()
            if getattr(plugins.get(t), f"{direction}_config") is not None
        ]
        problems.append(located.problem(
            (*where, "type"),
            f"no {direction} adapter of type {section.type!r}{did_you_mean(section.type, choices)}"
            f"; known: {', '.join(choices) or 'none'}",
        ))
        return None
    try:
        typed: AdapterConfig = model.model_validate(section.model_dump())
    except ValidationError as exc:
        problems.extend(problems_from(exc, located, model, where))
        return None
    return typed


def _mapping_pass(loaded: LoadedConfig, located: Located) -> list[Problem]:
    from middleware.mapping import load_mapping

    problems: list[Problem] = []
    for i, route in enumerate(loaded.config.routes):
        if route.mapping is None:
            continue
        path = loaded.resolve(route.mapping)
        if not path.is_file():
            problems.append(located.problem(("routes", i, "mapping"),
                                            f"mapping file {str(path)!r} does not exist"))
            continue
        try:
            mapping = load_mapping(path)
            if route.reverse:
                mapping.reverse()
        except ConfigError as exc:
            problems.extend(exc.problems)
    return problems
