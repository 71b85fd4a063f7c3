"""Helpers for mapping tests: write a mapping file and load it in one call."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from textwrap import dedent

import pytest

from middleware.mapping import Mapping, load_mapping


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write dedented text to tmp_path/name and return the path."""

    def write_file(text: str, name: str = "m.yaml") -> Path:
        path = tmp_path / name
        path.write_text(dedent(text).lstrip(), encoding="utf-8")
        return path

    return write_file


@pytest.fixture
def mapping(write: Callable[[str, str], Path]) -> Callable[[str], Mapping]:
    """Load a mapping whose `fields:` block is given (indented by two spaces)."""

    def load(fields: str) -> Mapping:
        body = "mapping: t\nfields:\n" + "\n".join(
            "  " + line for line in dedent(fields).strip("\n").splitlines())
        return load_mapping(write(body, "m.yaml"))

    return load
