"""StoreConfig: one backend for all state; PostgreSQL needs exactly one source for its DSN."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from middleware.config.loader import load_config
from middleware.config.models import StoreConfig


def test_store_config_postgres_needs_a_dsn_or_a_dsn_file() -> None:
    with pytest.raises(ValidationError, match="needs a dsn"):
        StoreConfig(kind="postgres")
    assert StoreConfig(kind="postgres", dsn_file="/run/secrets/dsn").dsn is None


def test_store_config_refuses_both_dsn_and_dsn_file() -> None:
    with pytest.raises(ValidationError, match="either dsn or dsn_file"):
        StoreConfig(kind="postgres", dsn="postgresql://db/x", dsn_file="/run/secrets/dsn")


def test_store_config_every_field_is_documented() -> None:
    assert all(field.description for field in StoreConfig.model_fields.values())


def test_store_config_dsn_is_taken_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORE_DSN", "postgresql://sb:pw@db:5432/sb")
    path = tmp_path / "silobridge.yaml"
    path.write_text(yaml.safe_dump({"store": {"kind": "postgres", "dsn": "${STORE_DSN}"}}))
    assert load_config(path).config.store.dsn == "postgresql://sb:pw@db:5432/sb"
