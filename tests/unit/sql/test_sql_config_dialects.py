"""SQL target config, SQL text per dialect and error classification, without a database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors
import pymysql
import pytest
import yaml
from pydantic import ValidationError

from adapters.sql.config import AuditConfig, SqlTargetConfig
from adapters.sql.dialects import dialect_for
from middleware.config.loader import SECTIONS, load_config
from middleware.errors import ConfigError

PG = dialect_for("postgresql://u@h/db", "dsn")
MY = dialect_for("mysql://u@h/db", "dsn")


def _target(**settings: Any) -> SqlTargetConfig:
    base = {"type": "sql", "dsn_env": "DSN", "table": "prices", "key": ["sku"],
            "columns": {"sku": "string", "price": "numeric"}}
    return SqlTargetConfig.model_validate({**base, **settings})


@pytest.mark.parametrize(("settings", "message"), [
    ({"table": "prices; DROP TABLE x"}, "not an allowed SQL identifier"),
    ({"table": "1prices"}, "not an allowed SQL identifier"),
    ({"columns": {"sku": "string", 'pri"ce': "numeric"}}, "not an allowed SQL identifier"),
    ({"columns": {"sku": "string", "sb_price": "numeric"}}, "reserved for the lineage"),
    ({"columns": {"sku": "string", "SKU": "string"}}, "differ only in case"),
    ({"key": ["id"]}, "key column(s) ['id'] are not in 'columns'"),
    ({"columns": {"sku": "varchar"}}, "Input should be 'string'"),
    ({"dsn_env": None}, "set dsn_env"),
    ({"dsn_file": "/run/dsn"}, "dsn_env and dsn_file are both set"),
    ({"schema": "a.b"}, "not an allowed SQL identifier"),
])
def test_sql_config_refuses_unsafe_or_inconsistent_settings(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        _target(**settings)
    assert message in str(caught.value)


def test_sql_config_takes_schema_by_its_yaml_name() -> None:
    assert _target(schema="warehouse").schema_name == "warehouse"


def test_sql_audit_section_is_validated_by_the_adapter(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"audit": {"type": "sql", "dsn_env": "X",
                                                "table": "bad name"}}))
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert "audit.table" in str(caught.value) and "not an allowed SQL identifier" in str(
        caught.value)
    config.write_text(yaml.safe_dump({"audit": {"type": "sqll", "dsn_env": "X"}}))
    with pytest.raises(ConfigError, match=r"no audit adapter of type 'sqll'.*did you mean"):
        load_config(config)
    config.write_text(yaml.safe_dump({"audit": {"type": "sql", "dsn_env": "X"}}))
    assert isinstance(load_config(config).config.audit, AuditConfig)


def test_sql_audit_dsn_is_a_secret_checked_before_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SB_UNIT_AUDIT_DSN", raising=False)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"audit": {"type": "sql", "dsn_env": "SB_UNIT_AUDIT_DSN"}}))
    with pytest.raises(ConfigError, match=r"audit\.dsn_env.*SB_UNIT_AUDIT_DSN"):
        load_config(config, secrets=SECTIONS)


def test_sql_upsert_text_per_dialect_quotes_names_and_parameterises_values() -> None:
    assert PG.upsert_sql('"t"', ["sku", "price"], ["sku"], 2) == (
        'INSERT INTO "t" ("sku", "price") VALUES (%s, %s), (%s, %s) '
        'ON CONFLICT ("sku") DO UPDATE SET "price" = EXCLUDED."price"')
    assert MY.upsert_sql("`t`", ["sku", "price"], ["sku"], 1) == (
        "INSERT INTO `t` (`sku`, `price`) VALUES (%s, %s) "
        "ON DUPLICATE KEY UPDATE `price` = VALUES(`price`)")
    assert PG.upsert_sql('"t"', ["sku"], ["sku"], 1).endswith('ON CONFLICT ("sku") DO NOTHING')
    assert PG.table_ref("dwh", "t") == '"dwh"."t"' and MY.table_ref(None, "t") == "`t`"


def test_sql_create_text_makes_the_key_the_primary_key() -> None:
    assert MY.create_sql("`t`", {"sku": "string", "doc": "json"}, ["sku"]) == (
        "CREATE TABLE IF NOT EXISTS `t` (`sku` varchar(255) NOT NULL, `doc` json, "
        "PRIMARY KEY (`sku`))")
    assert PG.create_sql('"a"', {"at": "timestamp"}, []) == (
        'CREATE TABLE IF NOT EXISTS "a" ("at" timestamptz)')


@pytest.mark.parametrize(("error", "retryable"), [
    (psycopg.errors.DeadlockDetected("deadlock detected"), True),
    (psycopg.errors.SerializationFailure("could not serialize"), True),
    (psycopg.errors.LockNotAvailable("could not obtain lock"), True),
    (psycopg.errors.QueryCanceled("canceling statement due to statement timeout"), True),
    (psycopg.errors.AdminShutdown("terminating connection"), True),
    (psycopg.OperationalError("connection to server failed"), True),
    (psycopg.errors.UniqueViolation("duplicate key"), False),
    (psycopg.errors.NumericValueOutOfRange("numeric field overflow"), False),
    (psycopg.errors.UndefinedColumn('column "x" does not exist'), False),
])
def test_sql_postgres_errors_are_classified_by_sqlstate(
    error: Exception, retryable: bool
) -> None:
    classified = PG.classify(error, "PostgreSQL table t")
    assert classified.retryable is retryable
    assert classified.details["error"].startswith("sql:")


@pytest.mark.parametrize(("error", "retryable"), [
    (pymysql.err.OperationalError(1213, "Deadlock found"), True),
    (pymysql.err.OperationalError(1205, "Lock wait timeout exceeded"), True),
    (pymysql.err.OperationalError(2013, "Lost connection to server during query"), True),
    (pymysql.err.OperationalError(2003, "Can't connect to MySQL server"), True),
    (pymysql.err.IntegrityError(1062, "Duplicate entry 'secret-value' for key 'PRIMARY'"), False),
    (pymysql.err.DataError(1406, "Data too long for column 'name' at row 3"), False),
    (pymysql.err.OperationalError(1366, "Incorrect decimal value: 'abc' for column"), False),
])
def test_sql_mariadb_errors_are_classified_by_number(error: Exception, retryable: bool) -> None:
    classified = MY.classify(error, "MariaDB table t")
    assert classified.retryable is retryable
    assert "secret-value" not in str(classified) and "'abc'" not in str(classified)


def test_sql_postgres_error_messages_leave_the_value_out() -> None:
    error = psycopg.errors.InvalidTextRepresentation(
        'invalid input syntax for type numeric: "4111 1111 1111 1111"')
    assert "4111" not in str(PG.classify(error, "t"))
    assert "type numeric" in str(PG.classify(error, "t"))


@pytest.mark.parametrize(("kind", "value", "expected"), [
    ("timestamp", "2026-01-01T08:00:00+08:00", "2026-01-01 00:00:00"),
    ("timestamp", "2026-01-01T00:00:00Z", "2026-01-01 00:00:00"),
    ("string", "x", "x"),
    ("json", {"a": 1}, '{"a":1}'),
])
def test_sql_mariadb_values_are_converted_per_column_type(
    kind: Any, value: Any, expected: str
) -> None:
    assert str(MY.value(kind, value)) == expected


@pytest.mark.parametrize(("kind", "value", "message"), [
    ("timestamp", "yesterday", "Invalid isoformat"),
    ("timestamp", 17, "not an ISO 8601 timestamp"),
    ("string", {"a": 1}, "declare the column as json"),
])
def test_sql_values_a_column_cannot_take_are_refused(kind: Any, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PG.value(kind, value)


def test_sql_unknown_database_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"scheme 'sqlite'.*postgresql://"):
        dialect_for("sqlite:///x.db", "routes.target.dsn")
