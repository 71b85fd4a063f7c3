"""deploy/ refers only to things that exist: paths, ports, commands, metrics and labels.

No container engine runs here, so these tests read the Dockerfile, compose file, Kubernetes
manifests, Prometheus config and Grafana dashboard as data and check each reference against
the project: files the containers read, ports in deploy/README.md, CLI commands the real
parser accepts, and metric names and labels defined in middleware/metrics.py.
"""

from __future__ import annotations

import importlib.util
import json
import posixpath
import re
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import dockerfile
import promql_parser
import pytest
import yaml

import middleware.metrics
from middleware.outcome import Outcome

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

SILOBRIDGE_SERVICES = ("ingress", "worker", "erp", "crm")
APP_PORTS = {"ingress": 8080, "ops": 9080, "erp": 8090, "crm": 8091}
QUEUE_KINDS = {"main", "retry", "dlq"}
SCRAPE_LABELS = {"job", "instance"}
"""Labels Prometheus adds to every scraped series."""


# --- loading ----------------------------------------------------------------------------------


@cache
def _dockerfile() -> tuple[dockerfile.Command, ...]:
    return dockerfile.parse_file(str(DEPLOY / "Dockerfile"))


@cache
def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


@cache
def _k8s() -> tuple[dict[str, Any], ...]:
    docs: list[dict[str, Any]] = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return tuple(docs)


@cache
def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DEPLOY / "grafana/dashboards/silobridge.json").read_text())
    return data


@cache
def _alerts() -> tuple[dict[str, Any], ...]:
    data = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())
    return tuple(rule for group in data["groups"] for rule in group["rules"])


def _prometheus() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    return data


@cache
def _documented_ports() -> frozenset[int]:
    """Ports listed in the first column of deploy/README.md's port table."""
    ports: set[int] = set()
    for line in (DEPLOY / "README.md").read_text().splitlines():
        cell = re.match(r"\|\s*([\d /]+?)\s*\|", line)
        if cell:
            ports.update(int(p) for p in cell.group(1).split("/"))
    return frozenset(ports)


def _deployments() -> list[dict[str, Any]]:
    return [doc for doc in _k8s() if doc["kind"] == "Deployment"]


def _containers() -> Iterator[dict[str, Any]]:
    for deployment in _deployments():
        yield from deployment["spec"]["template"]["spec"]["containers"]


# --- where container paths come from ----------------------------------------------------------


def _image_files() -> dict[PurePosixPath, Path]:
    """Container destination -> repository source of every COPY from the build context."""
    copies: dict[PurePosixPath, Path] = {}
    for cmd in _dockerfile():
        if cmd.cmd == "COPY" and not any(f.startswith("--from") for f in cmd.flags):
            *sources, dest = cmd.value
            for source in sources:
                into_dir = dest.endswith("/") and not source.endswith("/")
                target = (
                    PurePosixPath(dest) / Path(source).name if into_dir else PurePosixPath(dest)
                )
                copies[target] = ROOT / source
    return copies


def _compose_mounts(service: dict[str, Any]) -> dict[PurePosixPath, Path]:
    mounts: dict[PurePosixPath, Path] = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            mounts[PurePosixPath(target)] = (DEPLOY / source).resolve()
    return mounts


def _repo_path(container_path: str, mounts: dict[PurePosixPath, Path]) -> Path | None:
    """The repository file a container sees at *container_path*, through a mount or COPY."""
    wanted = PurePosixPath(container_path)
    for base, source in sorted(mounts.items(), key=lambda item: -len(str(item[0]))):
        if wanted == base or base in wanted.parents:
            return source / wanted.relative_to(base)
    return None


def _require(path: Path) -> None:
    relative = path.resolve().relative_to(ROOT).as_posix()
    assert path.exists(), f"{relative} does not exist"


def _silobridge_argvs() -> list[tuple[str, list[str], dict[PurePosixPath, Path]]]:
    """(where, argv, mounts) of every silobridge process the deploy files start."""
    image = _image_files()
    entrypoint = next(c for c in _dockerfile() if c.cmd == "ENTRYPOINT").value
    default_cmd = next(c for c in _dockerfile() if c.cmd == "CMD").value
    found = [("Dockerfile CMD", [*entrypoint, *default_cmd], image)]
    for name in SILOBRIDGE_SERVICES:
        service = _compose()["services"][name]
        found.append(
            (
                f"compose {name}",
                [*entrypoint, *service["command"]],
                image | _compose_mounts(service),
            )
        )
    for deployment in _deployments():
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            mounts = dict(image)
            for mount in container.get("volumeMounts", []):
                volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
                if "configMap" in volume and "subPath" in mount:
                    cm = _configmap(volume["configMap"]["name"])
                    assert mount["subPath"] in cm["data"], mount
                    mounts[PurePosixPath(mount["mountPath"])] = DEPLOY / mount["subPath"]
            argv = [*container.get("command", entrypoint), *container["args"]]
            found.append((f"k8s {deployment['metadata']['name']}", argv, mounts))
    return found


def _configmap(name: str) -> dict[str, Any]:
    return next(d for d in _k8s() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name)


# --- Dockerfile -------------------------------------------------------------------------------


def test_dockerfile_copy_sources_exist_in_build_context() -> None:
    copies = [c for c in _dockerfile() if c.cmd == "COPY" and not c.flags]
    assert copies
    for cmd in copies:
        for source in cmd.value[:-1]:
            assert (ROOT / source).exists(), f"line {cmd.start_line}: {source} not in the repo"


def test_dockerfile_copy_from_names_an_earlier_stage() -> None:
    stages: list[str] = []
    for cmd in _dockerfile():
        if cmd.cmd == "FROM" and len(cmd.value) == 3:
            stages.append(cmd.value[2])
        for flag in cmd.flags:
            if flag.startswith("--from="):
                assert flag.removeprefix("--from=") in stages, f"line {cmd.start_line}"


def test_dockerfile_ports_and_healthcheck_match_documented_ops_port() -> None:
    exposed = {int(p) for c in _dockerfile() if c.cmd == "EXPOSE" for p in c.value}
    assert exposed == {APP_PORTS["ingress"], APP_PORTS["ops"]}
    assert exposed <= _documented_ports()
    (health,) = [c for c in _dockerfile() if c.cmd == "HEALTHCHECK"]
    assert f"http://127.0.0.1:{APP_PORTS['ops']}/healthz" in health.original


def test_dockerfile_entrypoint_is_the_console_script() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (entrypoint,) = [c for c in _dockerfile() if c.cmd == "ENTRYPOINT"]
    assert entrypoint.json and entrypoint.value == ("silobridge",)
    assert "silobridge" in pyproject["project"]["scripts"]


def test_dockerfile_installs_the_demo_extra_where_compose_runs_the_demo() -> None:
    # The image installs the extras named by its SILOBRIDGE_EXTRAS build argument; every compose
    # service that runs `silobridge demo ...` must be built with "demo" there (spyne).
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (install,) = [c for c in _dockerfile() if c.cmd == "RUN" and "pip install" in c.value[0]]
    assert "${SILOBRIDGE_EXTRAS:+[$SILOBRIDGE_EXTRAS]}" in install.value[0]
    assert any(c.cmd == "ARG" and c.value[0].startswith("SILOBRIDGE_EXTRAS=")
               for c in _dockerfile())
    assert any(c.cmd == "COPY" and "silobridge_demo/" in c.value[:-1] for c in _dockerfile())
    assert "demo" in pyproject["project"]["optional-dependencies"]
    demo_services = [name for name in SILOBRIDGE_SERVICES
                     if _compose()["services"][name]["command"][0] == "demo"]
    assert demo_services == ["erp", "crm"]
    for name in demo_services:
        extras = _compose()["services"][name]["build"].get("args", {}).get("SILOBRIDGE_EXTRAS")
        assert extras is not None and "demo" in extras.split(","), name


# --- commands and the config files they read --------------------------------------------------


@pytest.mark.parametrize(
    ("where", "argv", "mounts"), _silobridge_argvs(), ids=[a[0] for a in _silobridge_argvs()]
)
def test_deploy_commands_parse_with_the_real_cli(
    where: str, argv: list[str], mounts: dict[PurePosixPath, Path]
) -> None:
    if importlib.util.find_spec("middleware.cli.commands") is None:
        pytest.skip("the CLI command modules are not in this tree yet")
    from middleware.cli import _parser

    parser = _parser()
    assert argv[0] == "silobridge", where
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert commands is not None
    args = parser.parse_args(argv[1:])
    assert callable(args.handler), where


@pytest.mark.parametrize(
    ("where", "argv", "mounts"), _silobridge_argvs(), ids=[a[0] for a in _silobridge_argvs()]
)
def test_deploy_config_files_reach_the_container(
    where: str, argv: list[str], mounts: dict[PurePosixPath, Path]
) -> None:
    configs = [argv[i + 1] for i, arg in enumerate(argv) if arg in ("-c", "--config")]
    if argv[1] == "run":
        assert configs, f"{where}: `run` without -c"
    for config in configs:
        source = _repo_path(config, mounts)
        assert source is not None, f"{where}: nothing provides {config} in the container"
        _require(source)


def test_deploy_config_listens_on_documented_ports_on_all_interfaces() -> None:
    config = yaml.safe_load((DEPLOY / "silobridge.yaml").read_text())
    assert config["ops"] == {"host": "0.0.0.0", "port": APP_PORTS["ops"]}
    assert config["ingress"] == {"host": "0.0.0.0", "port": APP_PORTS["ingress"]}
    assert config["broker"]["url"] == "${AMQP_URL}"


def test_deploy_config_loads_with_the_real_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("middleware.config.loader") is None:
        pytest.skip("the config loader is not in this tree yet")
    from middleware.config.loader import load_config

    config = yaml.safe_load((DEPLOY / "silobridge.yaml").read_text())
    for route in config["routes"]:
        _require((DEPLOY / route["mapping"]).resolve())
    monkeypatch.setenv("AMQP_URL", "amqp://guest:guest@rabbitmq:5672/")
    monkeypatch.delenv("SILOBRIDGE_DATA", raising=False)
    loaded = load_config(DEPLOY / "silobridge.yaml")
    assert loaded.config.ops.port == APP_PORTS["ops"]
    assert loaded.config.store.path == "/var/lib/silobridge/silobridge.db"
    assert loaded.config.routes, "the container config runs no route"


def test_deploy_config_mapping_paths_resolve_in_repo_and_image() -> None:
    # The image puts this file at /etc/silobridge/config/ and mappings/ at /etc/silobridge/
    # mappings/: a relative mapping path must name the same file in both layouts.
    config = yaml.safe_load((DEPLOY / "silobridge.yaml").read_text())
    image = _image_files()
    config_dir = next(k for k, v in image.items() if v == DEPLOY / "silobridge.yaml").parent
    for route in config["routes"]:
        in_image = _repo_path(posixpath.normpath(config_dir / route["mapping"]), image)
        in_repo = (DEPLOY / route["mapping"]).resolve()
        assert in_image is not None and in_image.resolve() == in_repo
        _require(in_repo)


# --- compose ----------------------------------------------------------------------------------


def test_compose_build_context_and_dockerfile_exist() -> None:
    for name in SILOBRIDGE_SERVICES:
        build = _compose()["services"][name]["build"]
        context = (DEPLOY / build["context"]).resolve()
        assert context == ROOT, name
        assert (context / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"


def test_compose_bind_mount_sources_exist() -> None:
    for name, service in _compose()["services"].items():
        for target, source in _compose_mounts(service).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) missing"


def test_compose_published_ports_are_documented() -> None:
    published: dict[str, set[int]] = {}
    for name, service in _compose()["services"].items():
        pairs = [tuple(int(n) for n in p.split(":")) for p in service.get("ports", [])]
        assert all(host == inside for host, inside in pairs), f"{name}: {pairs} remapped"
        published[name] = {inside for _, inside in pairs}
    assert all(ports <= _documented_ports() for ports in published.values()), published
    assert published["ingress"] == {APP_PORTS["ingress"]}
    assert published["erp"] == {APP_PORTS["erp"]}
    assert published["crm"] == {APP_PORTS["crm"]}
    assert published["worker"] == set(), "workers must scale: no fixed host port"


def test_compose_demo_peer_urls_name_services_and_ports() -> None:
    env = _compose()["services"]["worker"]["environment"]
    for var, service in (("CRM_URL", "crm"), ("ERP_URL", "erp"), ("INGRESS_URL", "ingress")):
        assert env[var] == f"http://{service}:{APP_PORTS[service]}"
    assert env["SILOBRIDGE_OPS_HOST"] == "0.0.0.0"


def test_compose_prometheus_and_grafana_read_project_files() -> None:
    services = _compose()["services"]
    prometheus = services["prometheus"]
    config = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    prometheus_yml = _repo_path(config.split("=", 1)[1], _compose_mounts(prometheus))
    assert prometheus_yml is not None and prometheus_yml.is_file()
    grafana = services["grafana"]
    mounts = _compose_mounts(grafana)
    home = _repo_path(grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"], mounts)
    assert home is not None and home.is_file()
    provisioning = _repo_path("/etc/grafana/provisioning", mounts)
    assert provisioning is not None
    providers = yaml.safe_load((provisioning / "dashboards/silobridge.yaml").read_text())
    for provider in providers["providers"]:
        dashboards = _repo_path(provider["options"]["path"], mounts)
        assert dashboards is not None and list(dashboards.glob("*.json"))


def test_prometheus_scrapes_compose_services_on_documented_ports() -> None:
    services = set(_compose()["services"])
    jobs = _prometheus()["scrape_configs"]
    for job in jobs:
        targets = [(n, sd["port"]) for sd in job.get("dns_sd_configs", []) for n in sd["names"]]
        for static in job.get("static_configs", []):
            targets += [(t.rsplit(":", 1)[0], int(t.rsplit(":", 1)[1])) for t in static["targets"]]
        for host, port in targets:
            assert host in services | {"localhost"}, job["job_name"]
            assert port in _documented_ports(), job["job_name"]
    scraped = {n for j in jobs for sd in j.get("dns_sd_configs", []) for n in sd["names"]}
    assert {"ingress", "worker"} <= scraped


def test_prometheus_rule_files_exist() -> None:
    for rule_file in _prometheus()["rule_files"]:
        assert (DEPLOY / "prometheus" / rule_file).exists()


# --- Kubernetes -------------------------------------------------------------------------------


def test_k8s_configmap_is_the_deploy_config() -> None:
    text = _configmap("silobridge-config")["data"]["silobridge.yaml"]
    assert text == (DEPLOY / "silobridge.yaml").read_text()


def test_k8s_probes_use_the_ops_port() -> None:
    for container in _containers():
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["ops"] == APP_PORTS["ops"]
        assert set(ports.values()) <= _documented_ports()
        expected = {"livenessProbe": "/healthz", "startupProbe": "/healthz",
                    "readinessProbe": "/readyz"}  # fmt: skip
        for probe, path in expected.items():
            get = container[probe]["httpGet"]
            assert (get["path"], ports[get["port"]]) == (path, APP_PORTS["ops"]), probe


def test_k8s_containers_have_requests_limits_and_secret_broker_url() -> None:
    for container in _containers():
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert {"cpu", "memory"} <= set(container["resources"]["limits"])
        (amqp,) = [e for e in container["env"] if e["name"] == "AMQP_URL"]
        assert "secretKeyRef" in amqp["valueFrom"]


def test_k8s_adapter_secrets_are_files_readable_by_the_pod_user_only() -> None:
    for deployment in _deployments():
        pod = deployment["spec"]["template"]["spec"]
        (volume,) = [v for v in pod["volumes"]
                     if v.get("secret", {}).get("secretName") == "silobridge-adapter-secrets"]
        assert volume["secret"]["defaultMode"] == 0o440
        assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
        for container in pod["containers"]:
            (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
            assert mount["mountPath"] == "/run/secrets/silobridge" and mount["readOnly"]
            assert "envFrom" not in container  # secrets stay out of the environment
    assert "/run/secrets/silobridge/" in (DEPLOY / "README.md").read_text()


def test_k8s_pods_run_as_the_image_user() -> None:
    (user,) = [c.value[0] for c in _dockerfile() if c.cmd == "USER"]
    uid, gid = (int(part) for part in user.split(":"))
    for deployment in _deployments():
        security = deployment["spec"]["template"]["spec"]["securityContext"]
        assert security["runAsNonRoot"] is True
        assert (security["runAsUser"], security["runAsGroup"]) == (uid, gid)


def test_k8s_scrape_annotations_point_at_metrics() -> None:
    for deployment in _deployments():
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == APP_PORTS["ops"]
        assert annotations["prometheus.io/path"] == "/metrics"


def test_k8s_selectors_match_pods_and_ports() -> None:
    pods = [d["spec"]["template"] for d in _deployments()]
    for deployment in _deployments():
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    for doc in _k8s():
        if doc["kind"] not in ("Service", "PodDisruptionBudget"):
            continue
        selector = doc["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        matched = [p for p in pods if selector.items() <= p["metadata"]["labels"].items()]
        assert matched, f"{doc['kind']} {doc['metadata']['name']} selects no pod"
        for port in doc["spec"].get("ports", []):
            names = {p["name"] for p in matched for c in p["spec"]["containers"]
                     for p in c["ports"]}  # fmt: skip
            assert port["targetPort"] in names
            assert port["port"] in _documented_ports()


def test_k8s_workers_and_ingress_are_separate_scalable_deployments() -> None:
    roles = {}
    for deployment in _deployments():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        args = container["args"]
        roles[args[args.index("--role") + 1]] = deployment["spec"]["replicas"]
    assert roles.keys() == {"ingress", "worker"}
    assert roles["worker"] >= 2, "workers are competing consumers: more than one replica"
    budgets = [d for d in _k8s() if d["kind"] == "PodDisruptionBudget"]
    assert len(budgets) == 2


# --- metrics in dashboard and alerts ----------------------------------------------------------


@cache
def _metric_labels() -> dict[str, frozenset[str]]:
    """Exposition name -> label names, for every metric in middleware.metrics."""
    exposed: dict[str, frozenset[str]] = {}
    for attr in middleware.metrics.__all__:
        metric = getattr(middleware.metrics, attr)
        labels = set(metric._labelnames)
        for family in metric.collect():
            for sample in family.samples:
                labels |= set(sample.labels)
        name, kind = metric._name, metric._type
        suffixes = {"counter": ["_total"], "gauge": [""], "info": ["_info"],
                    "histogram": ["_bucket", "_sum", "_count"]}[kind]  # fmt: skip
        for suffix in suffixes:
            exposed[name + suffix] = frozenset(labels | ({"le"} if suffix == "_bucket" else set()))
    return exposed


def _queries() -> list[tuple[str, str]]:
    queries = [(f"alert {rule['alert']}", rule["expr"]) for rule in _alerts()]
    for panel in _dashboard()["panels"]:
        for target in panel.get("targets", []):
            queries.append((f"panel {panel['title']!r}", target["expr"]))
    return queries


def _selectors(expr: str) -> list[tuple[str, list[promql_parser.Matcher]]]:
    """(metric name, label matchers) of every series selector in a PromQL expression."""
    found: list[tuple[str, list[promql_parser.Matcher]]] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append((node.name or "", list(node.matchers.matchers)))

    promql_parser.walk(promql_parser.parse(expr.replace("$__rate_interval", "5m")), visit)
    return found


@pytest.mark.parametrize(("where", "expr"), _queries(), ids=[q[0] for q in _queries()])
def test_queries_use_only_defined_metrics_and_labels(where: str, expr: str) -> None:
    defined = _metric_labels()
    for name, matchers in _selectors(expr):
        if name == "up":
            continue
        assert name in defined, f"{where}: {name} is not in middleware.metrics"
        for matcher in matchers:
            assert matcher.name in defined[name] | SCRAPE_LABELS, f"{where}: {matcher}"
            if matcher.name == "outcome":
                values = set(matcher.value.split("|"))
                assert values <= {o.value for o in Outcome}, f"{where}: {matcher}"
            if matcher.name == "kind":
                assert matcher.value in QUEUE_KINDS, f"{where}: {matcher}"


def test_dashboard_every_panel_has_a_query() -> None:
    panels = [p for p in _dashboard()["panels"] if p["type"] != "row"]
    assert len(panels) >= 10
    for panel in panels:
        exprs = [t.get("expr", "").strip() for t in panel.get("targets", [])]
        assert exprs and all(exprs), panel["title"]


def test_dashboard_route_variable_filters_every_route_metric() -> None:
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    route = variables["route"]
    ((metric, _),) = _selectors(route["definition"].removeprefix("label_values(").split(",")[0])
    assert "route" in _metric_labels()[metric]
    assert route["multi"] and route["includeAll"]
    for panel in _dashboard()["panels"]:
        for target in panel.get("targets", []):
            for name, matchers in _selectors(target["expr"]):
                if "route" in _metric_labels()[name]:
                    on_route = [(str(m.op), m.value) for m in matchers if m.name == "route"]
                    assert on_route == [("MatchOp.Re", "$route")], panel["title"]


def test_dashboard_covers_the_issue_panels() -> None:
    exprs = " ".join(expr for where, expr in _queries() if where.startswith("panel"))
    for needed in (
        "histogram_quantile(0.5, sum by (route, le) (rate(silobridge_sync_lag_seconds_bucket",
        "histogram_quantile(0.95, sum by (route, le) (rate(silobridge_sync_lag_seconds_bucket",
        "histogram_quantile(0.99, sum by (route, le) (rate(silobridge_sync_lag_seconds_bucket",
        "silobridge_received_total",
        'outcome="delivered"',
        'outcome="retried"',
        'outcome="dead_lettered"',
        'kind="dlq"',
        "silobridge_dlq_oldest_age_seconds",
        "silobridge_queue_depth",
        "silobridge_in_flight",
        "silobridge_broker_connected",
        "silobridge_reconnects_total",
    ):
        assert needed in exprs, needed


def test_dashboard_repeats_a_row_per_route_and_uses_its_datasource_variable() -> None:
    rows = [p for p in _dashboard()["panels"] if p["type"] == "row"]
    assert any(r.get("repeat") == "route" for r in rows)
    for panel in _dashboard()["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
    ids = [p["id"] for p in _dashboard()["panels"]]
    assert len(ids) == len(set(ids))


def test_alerts_cover_the_issue_conditions() -> None:
    rules = {rule["alert"]: rule for rule in _alerts()}
    dlq = rules["SilobridgeDeadLettersWaiting"]
    assert 'kind="dlq"' in dlq["expr"] and dlq["for"] == "5m"
    assert "silobridge_sync_lag_seconds_bucket" in rules["SilobridgeSyncLagHigh"]["expr"]
    assert "silobridge_consumers" in rules["SilobridgeNoConsumers"]["expr"]
    assert "silobridge_broker_connected" in rules["SilobridgeBrokerDisconnected"]["expr"]
    assert 'outcome="retried"' in rules["SilobridgeRetryStorm"]["expr"]
    for rule in rules.values():
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
