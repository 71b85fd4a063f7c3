"""Secrets from the environment, read once at adapter start.

Configs name environment variables (``*_env``) instead of holding secrets, so config files can be
committed with the mappings. A missing variable fails the start with the variable's name, not the
first request with a confusing 401.
"""

from __future__ import annotations

import os

from middleware.errors import ConfigError, Problem

__all__ = ["read_secret", "rotation_secrets"]


def read_secret(variable: str, where: str) -> str:
    """The value of ``variable``; ConfigError naming it (and the config path) when unset."""
    value = os.environ.get(variable)
    if not value:
        raise ConfigError([Problem(
            "<environment>", None, where,
            f"environment variable {variable!r} is not set or empty; export the secret "
            f"(or mount it) before starting silobridge",
        )])
    return value


def rotation_secrets(current: str, previous: str | None, where: str) -> list[bytes]:
    """The active secret and, during a rotation, the one it replaces; both are accepted."""
    names = [current] if previous is None else [current, previous]
    return [read_secret(name, where).encode() for name in names]
