"""Where the demo's config lives: package data, found through ``importlib.resources``.

The config names its mappings, schemas and WSDLs by paths relative to itself, so the daemon
needs the whole ``config/`` directory on disk. A package installed from a wheel (or an editable
checkout) is a directory, so the resource is a real path; a package imported from a zip archive
is not, and is refused with a message rather than copied, because nothing ships it that way.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from middleware.errors import SilobridgeError

__all__ = ["CONFIG_NAME", "config_path"]

CONFIG_NAME = "demo.yaml"


def config_path() -> Path:
    """The demo config shipped in this package (``config/demo.yaml``)."""
    resource = files(__package__ or "silobridge_demo") / "config" / CONFIG_NAME
    if not isinstance(resource, Path) or not resource.is_file():
        raise SilobridgeError(f"{resource}: the demo config is not a file on disk; install "
                              "silobridge from its wheel (pip install 'silobridge[demo]') "
                              "rather than importing it from a zip archive")
    return resource
