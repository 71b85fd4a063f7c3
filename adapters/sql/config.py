"""Config of the SQL target (``routes[*].target`` with ``type: sql``) and of the audit table.

    target:
      type: sql
      dsn_env: WAREHOUSE_DSN            # postgresql://... or mysql://... (MariaDB, MySQL)
      table: erp_price_list
      key: [sku]
      columns: {sku: string, price: numeric, currency: string, valid_from: timestamp}
      create: true
      batch: {max_rows: 500, max_wait_ms: 50}

The DSN is a secret (it usually holds a password): named by an environment variable or a file,
never written into the config. Table and column names are identifiers checked against a strict
pattern here and quoted per dialect when the SQL is built; values always travel as parameters.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from middleware.adapter import AdapterConfig
from middleware.secrets import SecretFields

__all__ = ["AuditConfig", "BatchConfig", "ColumnType", "SqlTargetConfig", "check_identifier"]

# letters, digits and underscores, starting with a letter or underscore: valid unquoted in both
# PostgreSQL and MariaDB, so a name means the same table in psql, in a BI tool and here
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

ColumnType = Literal["string", "text", "integer", "bigint", "numeric", "double", "boolean",
                     "date", "timestamp", "json"]


def check_identifier(value: str, column: bool = False) -> str:
    """The name itself, or ValueError saying which names are allowed."""
    if not _IDENTIFIER.match(value):
        raise ValueError(f"{value!r} is not an allowed SQL identifier: use 1-63 letters, digits "
                         f"and '_', starting with a letter or '_'")
    if column and value.lower().startswith("sb_"):
        raise ValueError(f"{value!r}: names starting with 'sb_' are reserved for the lineage "
                         f"columns")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BatchConfig(_Strict):
    """How rows are collected into one multi-row statement."""

    max_rows: int = Field(
        500, ge=1, le=10_000,
        description="Rows per statement at most; a full batch is written at once.")
    max_wait_ms: int = Field(
        50, ge=0, le=10_000,
        description="Milliseconds the first row of a batch waits for more rows; 0 writes "
        "whatever is queued without waiting.")


class _Connection(_Strict, SecretFields):
    dsn_env: str | None = Field(
        None, description="Environment variable holding the database URL "
        "(postgresql://user:pass@host:5432/db or mysql://user:pass@host:3306/db for MariaDB "
        "and MySQL); or use dsn_file.", examples=["WAREHOUSE_DSN"])
    dsn_file: str | None = Field(
        None, description="File holding the database URL (relative to the config file); instead "
        "of dsn_env.", examples=["/run/secrets/silobridge/warehouse-dsn"])
    connect_timeout: float = Field(
        5.0, gt=0, le=60, description="Seconds to open a connection before the delivery is "
        "retried.")
    statement_timeout: float = Field(
        30.0, gt=0, le=600,
        description="Seconds one statement (a whole batch) may run; a longer one is cancelled "
        "and retried. Keep it far below RabbitMQ's consumer timeout.")
    schema_name: str | None = Field(
        None, alias="schema",
        description="Schema (PostgreSQL) or database (MariaDB) of the table; the connection's "
        "default when unset.", examples=["warehouse"])

    @field_validator("schema_name")
    @classmethod
    def _schema(cls, value: str | None) -> str | None:
        return None if value is None else check_identifier(value)


class SqlTargetConfig(AdapterConfig, _Connection):
    """Upsert mapped records into a table by key, in batches, with lineage columns."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["sql"] = Field("sql", description="Selects this adapter.")
    table: str = Field(description="Table the records land in.", examples=["erp_price_list"])
    key: list[str] = Field(
        min_length=1, description="Columns that identify a record: an existing row with the "
        "same key is updated (needs a primary key or unique constraint on exactly these "
        "columns; create: true makes it the primary key).", examples=[["sku"]])
    columns: dict[str, ColumnType] = Field(
        min_length=1, description="Every column a mapped record may fill, with its type "
        "(used by create: true and to convert values). A payload field that is not listed is "
        "an error (dead-lettered); a listed field that is absent is written as NULL.",
        examples=[{"sku": "string", "price": "numeric"}])
    create: bool = Field(
        False, description="Create the table (with the lineage columns) at start when it does "
        "not exist; otherwise start fails unless every column exists.")
    lineage: bool = Field(
        True, description="Fill the sb_* lineage columns on every row (see docs/warehouse.md).")
    batch: BatchConfig = Field(default_factory=BatchConfig, description="Batching of rows.")
    writers: int = Field(
        1, ge=1, le=16, description="Connections writing in parallel; rows are spread over them "
        "by key, so the updates of one record stay in order.")

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        return check_identifier(value)

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: dict[str, ColumnType]) -> dict[str, ColumnType]:
        for name in value:
            check_identifier(name, column=True)
        lowered = [name.lower() for name in value]
        if len(set(lowered)) != len(lowered):
            raise ValueError("column names differ only in case; databases treat them as one")
        return value

    @model_validator(mode="after")
    def _key_is_a_column(self) -> SqlTargetConfig:
        missing = [name for name in self.key if name not in self.columns]
        if missing:
            raise ValueError(f"key column(s) {missing} are not in 'columns'; add them with "
                             f"their type")
        if len(set(self.key)) != len(self.key):
            raise ValueError("a key column is listed twice")
        return self


class AuditConfig(AdapterConfig, _Connection):
    """The audit table: one row per outcome of every message of every route."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["sql"] = Field("sql", description="Selects the SQL audit sink.")
    table: str = Field("silobridge_audit", description="Audit table; created at start when "
                       "missing.")
    include_payload: bool = Field(
        False, description="Also store the event's data (the source payload) as JSON; off by "
        "default so the audit table holds no business values.")
    batch: BatchConfig = Field(default_factory=BatchConfig, description="Batching of rows.")
    queue_limit: int = Field(
        100_000, ge=100, description="Outcomes waiting to be written at most; beyond it new "
        "ones are dropped and counted (the audit never holds up deliveries).")

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        return check_identifier(value)
