"""The CEL engine without its command line: every silobridge module that compiles a CEL
expression imports ``cel`` from here.

``import cel`` runs the ``common-expression-language`` package's ``__init__``, which imports the
package's interactive command line (typer, rich, prompt_toolkit: about 270 modules). Measured
(Python 3.11, 0.10.0): ``import middleware.daemon`` leaves 88.3 MiB resident with them and
81.7 MiB without, in every process and every CLI command, for nothing: silobridge uses only
``compile`` and ``OptionalValue``, which live in the compiled extension ``cel.cel``. So this
module loads that extension on its own and registers it as ``cel.cel``; a later ``import cel``
(a user's plugin, a test) then reuses it (a PyO3 extension panics when it is initialised twice).

Where the package's layout differs (another release), the package itself is imported as before.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

__all__ = ["cel"]


def _load() -> ModuleType:
    """The extension ``cel.cel`` alone when it can be found, else the whole package."""
    if "cel.cel" in sys.modules:
        return sys.modules["cel.cel"]
    package = importlib.util.find_spec("cel")
    for location in (package.submodule_search_locations or []) if package else []:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = Path(location) / f"cel{suffix}"
            spec = (importlib.util.spec_from_file_location("cel.cel", path)
                    if path.is_file() else None)
            if spec is None or spec.loader is None:
                continue
            module = importlib.util.module_from_spec(spec)
            sys.modules["cel.cel"] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules["cel.cel"]
                raise
            return module
    return importlib.import_module("cel")


if TYPE_CHECKING:
    import cel
else:
    cel = _load()
