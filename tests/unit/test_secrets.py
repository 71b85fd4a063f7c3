"""The secret resolver: a variable or a file, exactly one, clear errors that never hold a value."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from adapters.rest.inbound_config import GithubAuth
from adapters.rest.outbound_config import BearerAuth
from middleware.config.loader import load_config
from middleware.errors import ConfigError
from middleware.secrets import read_secret_file, require_secret, resolve_secret, secret_names

VALUE = "s3cr3t-Value-that-must-not-leak"


def _file(tmp_path: Path, content: str | bytes, name: str = "secret") -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def test_secrets_names_are_the_env_fields_with_a_file_twin() -> None:
    assert secret_names(GithubAuth) == ["secret", "previous_secret"]
    assert secret_names(BearerAuth) == ["token"]


def test_secrets_file_loses_exactly_one_trailing_newline(tmp_path: Path) -> None:
    assert read_secret_file(_file(tmp_path, f"{VALUE}\n")) == VALUE
    assert read_secret_file(_file(tmp_path, f"{VALUE}\r\n")) == VALUE
    assert read_secret_file(_file(tmp_path, f"{VALUE}\n\n")) == f"{VALUE}\n"
    assert read_secret_file(_file(tmp_path, f" {VALUE} ")) == f" {VALUE} "


@pytest.mark.parametrize(("content", "expected"), [
    (None, "does not exist; mount the secret there"),
    ("", "is empty; write the secret into it"),
    ("\n", "is empty"),
    (b"\xff\xfe\x00", "cannot be read (not UTF-8 text)"),
])
def test_secrets_file_problems_name_the_file_and_the_fix(
    tmp_path: Path, content: str | bytes | None, expected: str
) -> None:
    path = tmp_path / "absent" if content is None else _file(tmp_path, content)
    with pytest.raises(ValueError, match="secret file") as caught:
        read_secret_file(path)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_secrets_file_that_is_a_directory_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"cannot be read \(Is a directory\); make it a UTF-8"):
        read_secret_file(tmp_path)


def test_secrets_resolve_from_variable_or_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SB_TEST_SECRET", VALUE)
    by_env = GithubAuth(scheme="github", secret_env="SB_TEST_SECRET")
    by_file = GithubAuth(scheme="github", secret_file=str(_file(tmp_path, VALUE + "\n")))
    for auth in (by_env, by_file):
        secret = resolve_secret(auth, "secret", "inbound.hook.auth")
        assert secret is not None and secret.get_secret_value() == VALUE
        assert VALUE not in repr(secret) and VALUE not in str(secret)
        assert resolve_secret(auth, "previous_secret", "inbound.hook.auth") is None


@pytest.mark.parametrize("value", [None, ""])
def test_secrets_unset_or_empty_variable_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("SB_TEST_UNSET", raising=False)
    else:
        monkeypatch.setenv("SB_TEST_UNSET", value)
    auth = BearerAuth(type="bearer", token_env="SB_TEST_UNSET")
    with pytest.raises(ConfigError) as caught:
        require_secret(auth, "token", "routes.target.auth")
    (problem,) = caught.value.problems
    assert problem.path == "routes.target.auth.token_env"
    assert "'SB_TEST_UNSET' is " + ("not set" if value is None else "empty") in problem.message
    assert "token_file" in problem.message  # the other way to give it


def test_secrets_missing_file_names_the_setting_and_path(tmp_path: Path) -> None:
    auth = BearerAuth(type="bearer", token_file=str(tmp_path / "nope"))
    with pytest.raises(ConfigError) as caught:
        require_secret(auth, "token", "inbound.poller.auth")
    (problem,) = caught.value.problems
    assert problem.path == "inbound.poller.auth.token_file"
    assert f"'{tmp_path / 'nope'}' does not exist" in problem.message


def test_secrets_both_or_neither_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="secret_env and secret_file are both set"):
        GithubAuth(scheme="github", secret_env="A", secret_file="/b")
    with pytest.raises(ValidationError, match=r"set secret_env .* or secret_file"):
        GithubAuth(scheme="github")
    with pytest.raises(ValidationError, match="previous_secret_env and previous_secret_file"):
        GithubAuth(scheme="github", secret_env="A", previous_secret_env="B",
                   previous_secret_file="/c")


def test_secrets_interpolated_from_a_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    _file(tmp_path / "secrets", "p%40ss\n", "amqp-password")
    config = tmp_path / "silobridge.yaml"
    config.write_text("broker: {url: 'amqp://app:${file:secrets/amqp-password}@broker:5672/'}\n")
    assert load_config(config).config.broker.url == "amqp://app:p%40ss@broker:5672/"
    absolute = tmp_path / "secrets" / "amqp-password"
    config.write_text(f"broker: {{url: 'amqp://app:${{file:{absolute}}}@broker/'}}\n")
    assert load_config(config).config.broker.url == "amqp://app:p%40ss@broker/"


def test_secrets_broker_password_from_a_file_is_not_in_the_config_repr(tmp_path: Path) -> None:
    _file(tmp_path, VALUE, "amqp-password")
    config = tmp_path / "silobridge.yaml"
    config.write_text("broker: {url: 'amqp://app:${file:amqp-password}@broker/'}\n")
    loaded = load_config(config)
    assert loaded.config.broker.url == f"amqp://app:{VALUE}@broker/"
    assert VALUE not in repr(loaded) and VALUE not in str(loaded.config)


def test_secrets_interpolated_file_missing_is_reported_with_line(tmp_path: Path) -> None:
    config = tmp_path / "silobridge.yaml"
    config.write_text("ops: {port: 1}\nbroker:\n  url: 'amqp://app:${file:pw}@broker/'\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert [str(p) for p in caught.value.problems] == [
        f"{config}:3: broker.url: secret file '{tmp_path / 'pw'}' does not exist; mount the "
        "secret there (e.g. a Kubernetes Secret volume) or correct the path"]


def test_secrets_env_default_syntax_is_not_taken_for_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("file", raising=False)
    config = tmp_path / "silobridge.yaml"
    config.write_text("broker: {url: '${file:-amqp://guest:guest@h/}'}\n")
    assert load_config(config).config.broker.url == "amqp://guest:guest@h/"
