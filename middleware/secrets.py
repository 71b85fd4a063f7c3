"""Secrets from the environment or from files, one resolver for every adapter.

A config never holds a secret. It names where the secret is, in one of two forms per secret:

- ``<name>_env``: an environment variable (``secret_env: SHOPIFY_WEBHOOK_SECRET``);
- ``<name>_file``: a file whose content is the secret, one trailing newline stripped
  (``secret_file: /run/secrets/silobridge/shopify``), the way Kubernetes mounts a Secret as a
  volume. A relative path is relative to the config file's directory (the loader makes it
  absolute), like every other path in the config.

Exactly one form per secret (``SecretFields`` checks it when the config is validated). The
loader's secret pass (``secret_problems``) then reads every secret once without keeping it, so
``silobridge validate`` and ``silobridge run`` report an unset variable or an unreadable file
with the config file, line and path before anything starts; adapters read the value at start
with ``resolve_secret``. Values travel as ``SecretStr`` (its repr is ``'**********'``), and no
message here ever contains one: only variable names and file paths.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, SecretStr, model_validator

from middleware.errors import ConfigError, Problem

if TYPE_CHECKING:  # the YAML loader imports this module for ${file:...}
    from middleware.yamlfile import Located

__all__ = [
    "SecretFields",
    "absolutise_secret_files",
    "read_secret_file",
    "require_secret",
    "resolve_secret",
    "secret_names",
    "secret_problems",
]

PathParts = tuple[str | int, ...]


def secret_names(model: type[BaseModel]) -> list[str]:
    """Names of the secrets a model takes: every ``<name>_env`` with a ``<name>_file`` beside it."""
    fields = model.model_fields
    return [key[:-4] for key in fields if key.endswith("_env") and f"{key[:-4]}_file" in fields]


class SecretFields(BaseModel):
    """Mixin of a config model holding secrets: checks that each is given exactly one way.

    A secret named in ``optional_secrets`` may be left out entirely (the second secret of a
    rotation); every other one needs its ``_env`` or its ``_file``.
    """

    optional_secrets: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _one_source_per_secret(self) -> Any:
        for name in secret_names(type(self)):
            env, file = getattr(self, f"{name}_env"), getattr(self, f"{name}_file")
            if env is not None and file is not None:
                raise ValueError(
                    f"{name}_env and {name}_file are both set; keep one (the environment "
                    f"variable or the file holding the secret)")
            if env is None and file is None and name not in self.optional_secrets:
                raise ValueError(
                    f"the secret is missing: set {name}_env (an environment variable) or "
                    f"{name}_file (a file holding it, e.g. a mounted Kubernetes Secret)")
        return self


def resolve_secret(model: BaseModel, name: str, where: str) -> SecretStr | None:
    """The secret ``name`` of ``model``, or None when it is optional and not configured.

    Raises ConfigError naming the setting (``where`` is its config path) when the variable is
    unset or empty or the file cannot be read or is empty.
    """
    setting, outcome = _check(model, name)
    if setting is None:
        return None
    if isinstance(outcome, str):
        raise ConfigError([Problem("<secrets>", None, f"{where}.{setting}", outcome)])
    return outcome


def require_secret(model: BaseModel, name: str, where: str) -> str:
    """The value of a secret the config cannot leave out, for the client that sends it."""
    secret = resolve_secret(model, name, where)
    if secret is None:  # SecretFields refuses such a config; a hand-built model may not
        raise ConfigError([Problem("<secrets>", None, f"{where}.{name}_env",
                                   f"set {name}_env or {name}_file")])
    return secret.get_secret_value()


def secret_problems(
    root: BaseModel, sections: Sequence[str], located: Located
) -> list[Problem]:
    """Every secret under ``sections`` of a loaded config that cannot be read, with its line.

    Values are read and dropped at once; the problems name variables and files, never what
    they hold.
    """
    problems = []
    for path, model, name in _secret_sites(root, sections):
        setting, outcome = _check(model, name)
        if setting is not None and isinstance(outcome, str):
            problems.append(located.problem((*path, setting), outcome))
    return problems


def absolutise_secret_files(root: BaseModel, sections: Sequence[str], base_dir: Path) -> None:
    """Make every relative ``<name>_file`` under ``sections`` absolute against ``base_dir``.

    Done once by the loader, so adapters read the file the config meant whatever the working
    directory of the process is.
    """
    for _path, model, name in _secret_sites(root, sections):
        file = getattr(model, f"{name}_file")
        if file is not None and not Path(file).is_absolute():
            setattr(model, f"{name}_file", str(base_dir / file))


def _check(model: BaseModel, name: str) -> tuple[str | None, SecretStr | str]:
    """(setting used, the secret or what is wrong with it); setting None when neither is set."""
    env, file = getattr(model, f"{name}_env"), getattr(model, f"{name}_file")
    if file is not None:
        try:
            return f"{name}_file", SecretStr(read_secret_file(Path(file)))
        except ValueError as exc:
            return f"{name}_file", str(exc)
    if env is None:
        return None, ""
    value = os.environ.get(env)
    if not value:
        state = "empty" if value == "" else "not set"
        return f"{name}_env", (
            f"environment variable {env!r} is {state}; export the secret before starting "
            f"silobridge, or name a file holding it with {name}_file")
    return f"{name}_env", SecretStr(value)


def read_secret_file(path: Path) -> str:
    """The file's content minus one trailing newline (what ``echo`` and editors add).

    Raises ValueError saying what is wrong and how to fix it (the path, never the content) when
    the file is missing, unreadable, not UTF-8 or empty.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"secret file '{path}' does not exist; mount the secret there (e.g. a "
                         f"Kubernetes Secret volume) or correct the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ValueError(f"secret file '{path}' cannot be read ({reason}); make it a UTF-8 "
                         f"text file readable by the silobridge user") from None
    value = text[:-2] if text.endswith("\r\n") else text.removesuffix("\n")
    if not value:
        raise ValueError(f"secret file '{path}' is empty; write the secret into it")
    return value


def _secret_sites(
    root: BaseModel, sections: Sequence[str]
) -> Iterator[tuple[PathParts, BaseModel, str]]:
    for section in sections:
        yield from _walk(getattr(root, section), (section,))


def _walk(value: Any, path: PathParts) -> Iterator[tuple[PathParts, BaseModel, str]]:
    """Every (path, model, secret name) below value, depth first, in config order."""
    if isinstance(value, BaseModel):
        for name in secret_names(type(value)):
            yield path, value, name
        for key in type(value).model_fields:
            yield from _walk(getattr(value, key), (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, (*path, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, (*path, str(key)))
