"""The YAML mapping engine: load a mapping file, apply it, reverse it, test it.

    load_mapping(path) -> Mapping       every problem of the file at once (ConfigError)
    Mapping.apply(source, lookup)       pure; MappingError / XrefMissing at run time
    Mapping.reverse()                   the derived other direction
    MappingSet(paths).reload()          hot reload that keeps the last good mapping

See docs/mapping.md for the file format and every rule and transform.
"""

from middleware.mapping.compiled import Link, Mapping
from middleware.mapping.loader import MappingSet, load_mapping

__all__ = ["Link", "Mapping", "MappingSet", "load_mapping"]
