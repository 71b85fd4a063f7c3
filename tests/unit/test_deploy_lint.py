"""deploy/ passes the real linters and schema checks that run on this machine.

- Prometheus: ``promtool check config|rules``, ``promtool test rules`` on the alerts, and every
  dashboard query compiled by promtool as a recording rule. promtool is Debian's `prometheus`
  package: skipped where it is missing, a failure under CI.
- Compose: the compose-spec JSON schema vendored by check-jsonschema (no engine is needed).
- Dockerfile: ``dockerfile-utils lint`` (npm), skipped/failed like promtool, plus structural
  rules read through BuildKit's own parser (the `dockerfile` package): multi-stage, pinned
  base, non-root user, HEALTHCHECK on /healthz.
- Kubernetes: the official OpenAPI-derived schemas shipped by kubernetes-validate, strict
  (unknown fields are errors), for the oldest supported and the newest Kubernetes.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import dockerfile
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OLDEST_KUBERNETES = "1.28.0"


def _tool(name: str, install: str) -> str:
    """Path of a linter; skip without it locally, fail without it under CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed ({install})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def promtool() -> str:
    return _tool("promtool", "apt-get install prometheus")


# --- Prometheus -------------------------------------------------------------------------------


def test_promtool_check_config_and_its_rule_files(promtool: str) -> None:
    result = _run([promtool, "check", "config", str(DEPLOY / "prometheus/prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_promtool_check_rules(promtool: str) -> None:
    result = _run([promtool, "check", "rules", str(DEPLOY / "prometheus/alerts.yml")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_rule(promtool: str, tmp_path: Path) -> None:
    # Proves the check above can fail: the same file with one expression broken.
    broken = tmp_path / "alerts.yml"
    text = (DEPLOY / "prometheus/alerts.yml").read_text()
    broken.write_text(text.replace("max by (route) (", "max by (route) ((", 1))
    assert _run([promtool, "check", "rules", str(broken)]).returncode != 0


def test_promtool_compiles_every_dashboard_query(promtool: str, tmp_path: Path) -> None:
    dashboard = json.loads((DEPLOY / "grafana/dashboards/silobridge.json").read_text())
    rules = [
        {
            "record": f"dashboard:panel_{panel['id']}:{target['refId']}",
            "expr": target["expr"].replace("$__rate_interval", "5m"),
        }
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    path = tmp_path / "dashboard.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _run([promtool, "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


def _alert(name: str, **labels: str) -> dict[str, Any]:
    return {"exp_labels": {"alertname": name, **labels}}


ALERT_CASES: list[dict[str, Any]] = [
    {
        # One dead letter from minute 1: pending for 5 minutes, firing at 6.
        "interval": "1m",
        "input_series": [
            {"series": 'silobridge_queue_depth{route="orders",kind="dlq",instance="w1"}',
             "values": "0 1x20"},
            {"series": 'silobridge_queue_depth{route="orders",kind="dlq",instance="w2"}',
             "values": "0 1x20"},
            {"series": 'silobridge_queue_depth{route="orders",kind="main",instance="w1"}',
             "values": "50x20"},
        ],
        "alert_rule_test": [
            {"eval_time": "5m", "alertname": "SilobridgeDeadLettersWaiting", "exp_alerts": []},
            {"eval_time": "7m", "alertname": "SilobridgeDeadLettersWaiting",
             "exp_alerts": [_alert("SilobridgeDeadLettersWaiting", route="orders",
                                   severity="warning")]},
        ],
    },
    {
        # p95 lag between 5 and 15 minutes on "slow"; everything under a minute on "fast".
        "interval": "1m",
        "input_series": [
            {"series": 'silobridge_sync_lag_seconds_bucket{route="slow",le="300"}',
             "values": "0x40"},
            {"series": 'silobridge_sync_lag_seconds_bucket{route="slow",le="900"}',
             "values": "0+60x40"},
            {"series": 'silobridge_sync_lag_seconds_bucket{route="slow",le="+Inf"}',
             "values": "0+60x40"},
            {"series": 'silobridge_sync_lag_seconds_bucket{route="fast",le="60"}',
             "values": "0+60x40"},
            {"series": 'silobridge_sync_lag_seconds_bucket{route="fast",le="+Inf"}',
             "values": "0+60x40"},
        ],
        "alert_rule_test": [
            {"eval_time": "30m", "alertname": "SilobridgeSyncLagHigh",
             "exp_alerts": [_alert("SilobridgeSyncLagHigh", route="slow", severity="warning")]},
        ],
    },
    {
        "interval": "1m",
        "input_series": [
            {"series": 'silobridge_consumers{route="orders",instance="w1"}', "values": "2 0x10"},
            {"series": 'silobridge_consumers{route="orders",instance="w2"}', "values": "0x10"},
            {"series": 'silobridge_consumers{route="invoices",instance="w1"}', "values": "1x10"},
        ],
        "alert_rule_test": [
            {"eval_time": "8m", "alertname": "SilobridgeNoConsumers",
             "exp_alerts": [_alert("SilobridgeNoConsumers", route="orders",
                                   severity="critical")]},
            {"eval_time": "8m", "alertname": "SilobridgeWorkersDown", "exp_alerts": []},
        ],
    },
    {
        "interval": "1m",
        # Workers gone: only the ingress is scraped.
        "input_series": [{"series": 'silobridge_received_total{endpoint="crm",adapter="rest"}',
                          "values": "0+10x10"}],
        "alert_rule_test": [
            {"eval_time": "8m", "alertname": "SilobridgeWorkersDown",
             "exp_alerts": [_alert("SilobridgeWorkersDown", severity="critical")]},
        ],
    },
    {
        # The consume connection drops at minute 2; firing 2 minutes later, not before.
        "interval": "1m",
        "input_series": [
            {"series": 'silobridge_broker_connected{job="silobridge-worker",instance="w1",'
                       'connection="consume"}', "values": "1 1 0x10"},
            {"series": 'silobridge_broker_connected{job="silobridge-worker",instance="w1",'
                       'connection="publish"}', "values": "1x12"},
        ],
        "alert_rule_test": [
            {"eval_time": "3m", "alertname": "SilobridgeBrokerDisconnected", "exp_alerts": []},
            {"eval_time": "5m", "alertname": "SilobridgeBrokerDisconnected",
             "exp_alerts": [_alert("SilobridgeBrokerDisconnected", job="silobridge-worker",
                                   instance="w1", connection="consume",
                                   severity="critical")]},
        ],
    },
    {
        # "storm": 1 retry/s against 0.2 deliveries/s; "calm": few retries among many deliveries.
        "interval": "1m",
        "input_series": [
            {"series": 'silobridge_messages_total{route="storm",target="erp",outcome="retried"}',
             "values": "0+60x40"},
            {"series": 'silobridge_messages_total{route="storm",target="erp",'
                       'outcome="delivered"}', "values": "0+12x40"},
            {"series": 'silobridge_messages_total{route="calm",target="erp",outcome="retried"}',
             "values": "0+12x40"},
            {"series": 'silobridge_messages_total{route="calm",target="erp",'
                       'outcome="delivered"}', "values": "0+600x40"},
        ],
        "alert_rule_test": [
            {"eval_time": "30m", "alertname": "SilobridgeRetryStorm",
             "exp_alerts": [_alert("SilobridgeRetryStorm", route="storm", severity="warning")]},
        ],
    },
]  # fmt: skip


def test_promtool_alert_rules_fire_when_and_only_when_expected(
    promtool: str, tmp_path: Path
) -> None:
    # Given the shipped rules without annotations (their wording is not under test here)
    rules = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules))
    tests = {"rule_files": ["alerts.yml"], "evaluation_interval": "1m", "tests": ALERT_CASES}
    (tmp_path / "alerts.test.yml").write_text(yaml.safe_dump(tests))
    # When promtool evaluates them over synthetic series
    result = _run([promtool, "test", "rules", str(tmp_path / "alerts.test.yml")])
    # Then every expected alert fires at its time with its labels, and no other
    assert result.returncode == 0, result.stdout + result.stderr


# --- compose ----------------------------------------------------------------------------------


def _check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
    return _run([*argv, str(path)])


def test_compose_matches_the_compose_spec_schema() -> None:
    result = _check_compose(DEPLOY / "compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_schema_check_rejects_an_invalid_service(tmp_path: Path) -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    compose["services"]["worker"]["deploy"]["replicas"] = "two"
    compose["services"]["worker"]["restrat"] = "always"
    broken = tmp_path / "compose.yaml"
    broken.write_text(yaml.safe_dump(compose))
    result = _check_compose(broken)
    assert result.returncode != 0
    assert "restrat" in result.stdout + result.stderr


# --- Dockerfile -------------------------------------------------------------------------------


def test_dockerfile_lint() -> None:
    lint = _tool("dockerfile-utils", "npm install -g dockerfile-utils")
    result = _run([lint, "lint", str(DEPLOY / "Dockerfile")])
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_dockerfile_lint_rejects_a_broken_dockerfile(tmp_path: Path) -> None:
    lint = _tool("dockerfile-utils", "npm install -g dockerfile-utils")
    broken = tmp_path / "Dockerfile"
    text = (DEPLOY / "Dockerfile").read_text()
    broken.write_text(text.replace("--interval=15s", "--interval=15x"))
    assert _run([lint, "lint", str(broken)]).returncode != 0


def _stages() -> list[list[dockerfile.Command]]:
    stages: list[list[dockerfile.Command]] = []
    for cmd in dockerfile.parse_file(str(DEPLOY / "Dockerfile")):
        if cmd.cmd == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(cmd)
    return stages


def _base_image(reference: str) -> str:
    args = {
        key: value
        for cmd in dockerfile.parse_file(str(DEPLOY / "Dockerfile"))
        if cmd.cmd == "ARG"
        for key, _, value in [cmd.value[0].partition("=")]
    }
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], reference)


def test_dockerfile_is_multi_stage_and_runtime_copies_from_build() -> None:
    stages = _stages()
    assert len(stages) >= 2
    runtime = stages[-1]
    copies_from = [f for c in runtime if c.cmd == "COPY" for f in c.flags if f.startswith("--from")]
    assert copies_from, "the runtime stage should take the built venv from an earlier stage"
    assert not [c for c in runtime if c.cmd == "RUN" and "pip install" in c.value[0]]


def test_dockerfile_base_images_are_pinned() -> None:
    pinned = re.compile(r"^[\w./-]+(:\d+\.\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$")
    for stage in _stages():
        image = _base_image(stage[0].value[0])
        assert pinned.match(image) and (":" in image or "@" in image), image
        assert not image.endswith(":latest")


def test_dockerfile_runtime_user_is_not_root() -> None:
    users = [c.value[0] for c in _stages()[-1] if c.cmd == "USER"]
    assert users, "no USER in the runtime stage"
    name = users[-1].split(":")[0]
    assert name not in ("root", "0")


def test_dockerfile_healthcheck_probes_healthz() -> None:
    (health,) = [c for c in _stages()[-1] if c.cmd == "HEALTHCHECK"]
    assert health.value[0] == "CMD"
    assert "/healthz" in health.original
    assert re.search(r"--timeout=\d+s", health.original)


# --- Kubernetes -------------------------------------------------------------------------------


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc)
        for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, kubernetes_validate.latest_version()])
@pytest.mark.parametrize(("where", "doc"), _manifests(), ids=[m[0] for m in _manifests()])
def test_k8s_manifests_match_the_kubernetes_schemas(
    where: str, doc: dict[str, Any], version: str
) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_k8s_schema_check_rejects_unknown_and_mistyped_fields() -> None:
    deployment = next(doc for _, doc in _manifests() if doc["kind"] == "Deployment")
    typo = copy.deepcopy(deployment)
    container = typo["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, OLDEST_KUBERNETES, strict=True)
    mistyped = copy.deepcopy(deployment)
    mistyped["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(mistyped, OLDEST_KUBERNETES, strict=True)
