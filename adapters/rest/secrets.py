"""The secrets of a REST endpoint's auth scheme, read once at adapter start.

Where a secret comes from (``secret_env`` or ``secret_file``) is ``middleware.secrets``' business;
this adds the rotation: a missing secret fails the start with the setting's name, not the first
request with a confusing 401.
"""

from __future__ import annotations

from pydantic import BaseModel

from middleware.secrets import require_secret, resolve_secret

__all__ = ["rotation_secrets"]


def rotation_secrets(auth: BaseModel, where: str) -> list[bytes]:
    """The active secret and, during a rotation, the one it replaces; both are accepted."""
    secrets = [require_secret(auth, "secret", where).encode()]
    previous = resolve_secret(auth, "previous_secret", where)
    if previous is not None:
        secrets.append(previous.get_secret_value().encode())
    return secrets
