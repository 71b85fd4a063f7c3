"""Every secret of every adapter, as a variable or a file, through the loader and `validate`.

One config holds every place a secret can be configured (REST inbound schemes with the
rotation's second secret, pollers, REST and SOAP targets); each test writes it with the
secrets given one way and checks what the loader, the adapters' readers and the CLI make of it.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import yaml

from adapters.rest.client import build_auth
from adapters.rest.signatures import AuthError, SignedRequest, build_verifier
from middleware.cli import main
from middleware.config.loader import SECTIONS, load_config
from middleware.errors import ConfigError
from middleware.secrets import resolve_secret

REPO = Path(__file__).resolve().parents[2]
WSDL = str(REPO / "mappings" / "examples" / "soap-erp" / "demo-erp.wsdl")
DERIVE = {"entity": {"value": "customer"}, "action": {"value": "updated"}}


def _rest(name: str, auth: dict[str, Any]) -> dict[str, Any]:
    return {"type": "rest", "name": name, "path": f"/hooks/{name}", "system": "crm",
            "derive": DERIVE, "auth": auth}


def _poll(name: str, auth: dict[str, Any]) -> dict[str, Any]:
    return {"type": "poll", "name": name, "schedule": "0 2 * * *", "system": "erp",
            "url": "https://erp.example.com/x", "derive": DERIVE, "auth": auth}


def _route(name: str, target: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "bind": ["crm.#"], "target": target}


OAUTH = {"type": "oauth2", "token_url": "https://idp/token", "client_id": "sb"}
BASE: dict[str, Any] = {
    "inbound": [
        _rest("hmac", {"scheme": "hmac", "header": "X-Signature"}),
        _rest("github", {"scheme": "github"}),
        _rest("shopify", {"scheme": "shopify"}),
        _rest("stripe", {"scheme": "stripe"}),
        _rest("hubspot", {"scheme": "hubspot"}),
        _rest("apikey", {"scheme": "api_key"}),
        _rest("basic", {"scheme": "basic", "username": "crm"}),
        _poll("poll-bearer", {"type": "bearer"}),
        _poll("poll-basic", {"type": "basic", "username": "sb"}),
        _poll("poll-oauth", dict(OAUTH)),
    ],
    "routes": [
        _route("rest-basic", {"type": "rest", "url": "https://erp/x",
                              "auth": {"type": "basic", "username": "sb"}}),
        _route("rest-bearer", {"type": "rest", "url": "https://erp/x",
                               "auth": {"type": "bearer"}}),
        _route("rest-oauth", {"type": "rest", "url": "https://erp/x", "auth": dict(OAUTH)}),
        _route("soap", {"type": "soap", "wsdl": WSDL, "operation": "CreateSalesOrder",
                        "wsse": {"username": "sb"}, "basic": {"username": "sb"}}),
    ],
}
# (path of the dict holding the secret, secret name): every secret field there is.
SITES: list[tuple[tuple[str | int, ...], str]] = [
    *[(("inbound", i, "auth"), "secret") for i in range(7)],
    (("inbound", 0, "auth"), "previous_secret"),
    (("inbound", 7, "auth"), "token"),
    (("inbound", 8, "auth"), "password"),
    (("inbound", 9, "auth"), "client_secret"),
    (("routes", 0, "target", "auth"), "password"),
    (("routes", 1, "target", "auth"), "token"),
    (("routes", 2, "target", "auth"), "client_secret"),
    (("routes", 3, "target", "wsse"), "password"),
    (("routes", 3, "target", "basic"), "password"),
]


def _at(document: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        document = document[part]
    return document


def _value(n: int) -> str:
    return f"value-{n}-of-a-secret"


def _variable(n: int) -> str:
    return f"SB_SECRETS_TEST_{n}"


def _write(tmp_path: Path, form: str, skip: int | None = None) -> Path:
    """The config with every secret as a variable or as a file (relative), except ``skip``."""
    document = copy.deepcopy(BASE)
    (tmp_path / "secrets").mkdir(exist_ok=True)
    for n, (path, name) in enumerate(SITES):
        if n == skip:
            continue
        where = _at(document, path)
        if form == "env":
            where[f"{name}_env"] = _variable(n)
        else:
            where[f"{name}_file"] = f"secrets/{n}"
    config = tmp_path / "silobridge.yaml"
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    return config


@pytest.fixture
def secrets_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(len(SITES)):
        monkeypatch.setenv(_variable(n), _value(n))
        (tmp_path / "secrets").mkdir(exist_ok=True)
        (tmp_path / "secrets" / str(n)).write_text(_value(n) + "\n")


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[..., Result]]:
    """Run a silobridge command on a config in this process (as the console script would)."""

    def run(config: Path, command: str) -> Result:
        code = main([command, "-c", str(config)])
        out, err = capsys.readouterr()
        return Result(code, out, err)

    # `run` configures logging for the process before it reads the config: put it back after
    root = logging.getLogger()
    handlers, level, structlog_config = root.handlers[:], root.level, structlog.get_config()
    yield run
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**structlog_config)


@pytest.mark.usefixtures("secrets_set")
@pytest.mark.parametrize("form", ["env", "file"])
def test_secrets_every_adapter_takes_both_forms(tmp_path: Path, form: str) -> None:
    loaded = load_config(_write(tmp_path, form), secrets=SECTIONS)
    for n, (path, name) in enumerate(SITES):
        holder = _model_at(loaded.config, path)
        secret = resolve_secret(holder, name, "x")
        assert secret is not None and secret.get_secret_value() == _value(n), (path, name)


def _model_at(config: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        config = config[part] if isinstance(part, int) else getattr(config, part)
    return config


def test_secrets_relative_files_resolve_against_the_config_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secrets_set: None
) -> None:
    monkeypatch.chdir(REPO)
    loaded = load_config(_write(tmp_path, "file"))
    auth = loaded.config.inbound[0].auth  # type: ignore[attr-defined]
    assert auth.secret_file == str(tmp_path / "secrets" / "0")


@pytest.mark.parametrize("n", range(len(SITES)))
@pytest.mark.parametrize("both", [True, False])
def test_secrets_both_or_neither_form_is_reported_at_the_setting(
    tmp_path: Path, secrets_set: None, n: int, both: bool
) -> None:
    path, name = SITES[n]
    config = _write(tmp_path, "env", skip=n)
    document = yaml.safe_load(config.read_text())
    if both:
        _at(document, path).update({f"{name}_env": "A", f"{name}_file": "b"})
    elif name == "previous_secret":  # the rotation's second secret may be left out
        return
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    (problem,) = caught.value.problems
    assert problem.path == ".".join(map(str, path))
    assert problem.line is not None
    expected = (f"{name}_env and {name}_file are both set" if both
                else f"set {name}_env (an environment variable) or {name}_file")
    assert expected in problem.message


@pytest.mark.parametrize("form", ["env", "file"])
def test_secrets_validate_reports_every_unreadable_secret_with_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Result], form: str
) -> None:
    # Given every secret configured, but no variable set and no file present
    for n in range(len(SITES)):
        monkeypatch.delenv(_variable(n), raising=False)
    config = _write(tmp_path, form)
    lines = config.read_text().splitlines()
    # When validate checks the config
    result = cli(config, "validate")
    # Then it lists each secret with file, line (of its *_env/*_file key) and path, and fails
    assert result.returncode == 2, result.stdout
    assert f"invalid configuration ({len(SITES)} problem(s))" in result.stderr
    reported = [line.strip() for line in result.stderr.splitlines()[1:]]
    for n, (path, name) in enumerate(SITES):
        setting = f"{name}_{form}"
        [line] = [i + 1 for i, text in enumerate(lines)
                  if text.strip().startswith(f"{setting}:") and text.strip().endswith(
                      _variable(n) if form == "env" else f"secrets/{n}")]
        prefix = f"{config}:{line}: {'.'.join(map(str, path))}.{setting}: "
        [message] = [r[len(prefix):] for r in reported if r.startswith(prefix)]
        if form == "env":
            assert message.startswith(f"environment variable '{_variable(n)}' is not set")
        else:
            assert message.startswith(f"secret file '{tmp_path}/secrets/{n}' does not exist")


def test_secrets_run_refuses_with_the_message_validate_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Result]
) -> None:
    for n in range(len(SITES)):
        monkeypatch.delenv(_variable(n), raising=False)
    config = _write(tmp_path, "env")
    validate, run = cli(config, "validate"), cli(config, "run")
    assert run.returncode == validate.returncode == 2
    assert run.stderr == validate.stderr


def test_secrets_a_role_reads_only_the_secrets_it_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secrets_set: None
) -> None:
    webhook = [n for n, (path, _) in enumerate(SITES) if path[0] == "inbound"]
    for n in webhook:
        monkeypatch.delenv(_variable(n))
    config = _write(tmp_path, "env")
    load_config(config, secrets=("routes",))  # a worker: no webhook secret needed
    with pytest.raises(ConfigError) as caught:
        load_config(config, secrets=("inbound",))
    assert len(caught.value.problems) == len(webhook)


def test_secrets_validate_output_never_holds_a_value(
    tmp_path: Path, secrets_set: None, cli: Callable[..., Result]
) -> None:
    # Given one secret missing and all the others readable (their values in files and variables)
    config = _write(tmp_path, "file")
    (tmp_path / "secrets" / "0").unlink()
    result = cli(config, "validate")
    assert result.returncode == 2
    for n in range(len(SITES)):
        assert _value(n) not in result.stdout + result.stderr
    (tmp_path / "secrets" / "0").write_text(_value(0))
    result = cli(config, "validate")
    assert result.returncode == 0, result.stderr
    assert not any(_value(n) in result.stdout + result.stderr for n in range(len(SITES)))


def test_secrets_from_files_reach_the_verifiers_and_clients(
    tmp_path: Path, secrets_set: None
) -> None:
    # Given every secret as a file (with a trailing newline)
    loaded = load_config(_write(tmp_path, "file"))
    inbound = loaded.config.inbound
    body = b'{"id": 1}'

    def signed(secret: str) -> SignedRequest:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return SignedRequest("POST", "", {"X-Signature": digest}, {}, body)

    # Then the HMAC endpoint accepts its secret and the rotation's previous one, nothing else
    verifier = build_verifier(inbound[0].auth, "inbound.hmac.auth")  # type: ignore[attr-defined]
    verifier.verify(signed(_value(0)), time.time())
    verifier.verify(signed(_value(SITES.index((("inbound", 0, "auth"), "previous_secret")))),
                    time.time())
    with pytest.raises(AuthError):
        verifier.verify(signed(_value(0) + "\n"), time.time())
    # and the poller sends its bearer token, read from the file without the newline
    poll_config = inbound[7].auth  # type: ignore[attr-defined]
    poll_auth = build_auth(poll_config, "inbound.poll-bearer.auth", 5, True)
    assert poll_auth is not None
    request = next(poll_auth.sync_auth_flow(httpx.Request("GET", "https://erp.example.com/x")))
    token = _value(SITES.index((("inbound", 7, "auth"), "token")))
    assert request.headers["authorization"] == f"Bearer {token}"
