"""Config loading: every problem at once, with file, line, dotted path and a 'did you mean'."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from middleware.config.loader import load_config
from middleware.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

BAD = """\
broker:
  url: amqp://guest:guest@127.0.0.1:5672/
  prefetsh: 10
retry:
  attempts: -1
routes:
  - name: Orders!
    bind: ["crm.order.*"]
    target: {type: amqq, exchange: x}
  - name: customers
    bind: ["crm..customer"]
    mapping: nowhere/missing.yaml
    target:
      type: amqp
      exchange: erp
      routing_ky: erp.account
secret: ${SILOBRIDGE_TEST_UNSET_VARIABLE}
"""


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(p) for p in caught.value.problems]


def test_config_env_errors_are_reported_with_line(tmp_path: Path) -> None:
    found = problems(tmp_path, BAD)
    assert found == [f"{tmp_path}/bad.yaml:17: secret: environment variable "
                     "SILOBRIDGE_TEST_UNSET_VARIABLE is not set; set it or write "
                     "${SILOBRIDGE_TEST_UNSET_VARIABLE:-default}"]


def test_config_reports_every_model_problem_at_once(tmp_path: Path) -> None:
    text = BAD.replace("secret: ${SILOBRIDGE_TEST_UNSET_VARIABLE}\n", "")
    found = problems(tmp_path, text)
    file = f"{tmp_path}/bad.yaml"
    assert f"{file}:3: broker.prefetsh: unknown key 'prefetsh' (did you mean 'prefetch'?)" \
        in found
    assert any(p.startswith(f"{file}:5: retry.attempts: Input should be greater") for p in found)
    assert any(p.startswith(f"{file}:7: routes.0.name:") and "lowercase" in p for p in found)
    assert any(p.startswith(f"{file}:11: routes.1.bind:") and "crm..customer" in p
               for p in found)
    assert len(found) == 4


def test_config_adapter_and_mapping_problems_come_together(tmp_path: Path) -> None:
    text = BAD.replace("secret: ${SILOBRIDGE_TEST_UNSET_VARIABLE}\n", "")
    text = text.replace("prefetsh", "prefetch").replace("attempts: -1", "attempts: 1")
    text = text.replace("Orders!", "orders").replace("crm..customer", "crm.customer.*")
    found = problems(tmp_path, text)
    file = f"{tmp_path}/bad.yaml"
    assert found[0] == (f"{file}:9: routes.0.target.type: no outbound adapter of type 'amqq' "
                        f"(did you mean 'amqp'?); known: " + found[0].split("known: ")[1])
    assert f"{file}:16: routes.1.target.routing_ky: unknown key 'routing_ky' " \
        "(did you mean 'routing_key'?)" in found
    assert f"{file}:14: routes.1.target.routing_key: required key is missing" in found
    assert any("routes.1.mapping: mapping file" in p and "does not exist" in p for p in found)


def test_config_interpolates_environment_with_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SB_TEST_URL", "amqp://u:p@broker:5672/")
    path = tmp_path / "ok.yaml"
    path.write_text("broker: {url: '${SB_TEST_URL}', prefetch: '${SB_TEST_PREFETCH:-42}'}\n")
    config = load_config(path).config
    assert config.broker.url == "amqp://u:p@broker:5672/"
    assert config.broker.prefetch == 42


def test_config_rejects_duplicate_keys_and_route_names(tmp_path: Path) -> None:
    found = problems(tmp_path, "ops: {port: 1}\nops: {port: 2}\n")
    assert found == [f"{tmp_path}/bad.yaml:2: ops: duplicate key; the later value would "
                     "silently win"]
    route = "{name: a, bind: [x], target: {type: amqp, exchange: e, routing_key: k}}"
    found = problems(tmp_path, f"routes:\n  - {route}\n  - {route}\n")
    assert "route names must be unique; repeated: a" in found[0]


def test_config_quickstart_is_valid() -> None:
    loaded = load_config(REPO / "mappings" / "quickstart.yaml")
    assert [r.name for r in loaded.config.routes] == ["quickstart"]


@pytest.mark.parametrize("command", ["validate", "run"])
def test_cli_validate_and_run_fail_fast_listing_every_problem(
    tmp_path: Path, command: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD.replace("secret: ${SILOBRIDGE_TEST_UNSET_VARIABLE}\n", ""))
    result = subprocess.run(
        [sys.executable, "-m", "middleware", command, "-c", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert "invalid configuration (4 problem(s))" in result.stderr
    assert "did you mean 'prefetch'?" in result.stderr


def test_cli_validate_accepts_the_quickstart() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "middleware", "validate", "-c", "mappings/quickstart.yaml"],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "valid (1 route(s)" in result.stdout
