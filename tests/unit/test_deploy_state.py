"""deploy/ keeps state where it survives restarts and is shared by replicas: PostgreSQL.

Compose runs ingress and workers on its PostgreSQL service (healthy before they start, data on
a named volume); the Kubernetes Deployments take the DSN from a Secret, and nothing a restart
must keep is on an emptyDir. Each config is loaded with the real loader and the environment the
container gets, so a store setting that does not reach silobridge fails here.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from middleware.config.loader import load_config
from tests.unit.test_deploy_files import DEPLOY, ROOT, _compose, _deployments

_COMPOSE_VAR = re.compile(r"\$\{(\w+):-([^}]*)\}")


def _compose_env(service: dict[str, Any]) -> dict[str, str]:
    """The service's environment as compose passes it (``${VAR:-default}`` unset: default)."""
    return {k: _COMPOSE_VAR.sub(lambda m: m.group(2), str(v))
            for k, v in service["environment"].items()}


def _set_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name in ("STORE_KIND", "STORE_DSN", "STORE_DSN_FILE", "SILOBRIDGE_DATA"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def _host_path(service: dict[str, Any], container_path: str) -> Path:
    """The file in this repository that a container path of the service is mounted from."""
    path = PurePosixPath(container_path)
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if path.is_relative_to(target):
            return (ROOT / "deploy" / source / path.relative_to(target)).resolve()
    raise AssertionError(f"{container_path} is not mounted into the service")


@pytest.mark.parametrize("role", ["ingress", "worker"])
def test_compose_runs_ingress_and_workers_on_the_postgres_service(
    role: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = _compose()["services"]
    service = services[role]
    assert service["depends_on"]["postgres"] == {"condition": "service_healthy"}
    # the config it runs, loaded with the environment compose gives it
    config = service["command"][service["command"].index("-c") + 1]
    _set_env(monkeypatch, _compose_env(service))
    loaded = load_config(_host_path(service, config))
    store = loaded.config.store
    assert store.kind == "postgres"
    assert store.dsn is not None and "@postgres:5432/" in store.dsn
    postgres = services["postgres"]
    user = postgres["environment"]["POSTGRES_USER"]
    database = postgres["environment"]["POSTGRES_DB"]
    assert store.dsn.startswith(f"postgresql://{user}:") and store.dsn.endswith(f"/{database}")


def test_compose_postgres_is_healthchecked_and_keeps_its_data_on_a_volume() -> None:
    compose = _compose()
    postgres = compose["services"]["postgres"]
    assert "pg_isready" in postgres["healthcheck"]["test"]
    (data,) = [v for v in postgres["volumes"] if v.endswith(":/var/lib/postgresql/data")]
    assert data.split(":")[0] in compose["volumes"]  # a named volume, not the container layer


@pytest.mark.parametrize("deployment", _deployments(), ids=lambda d: d["metadata"]["name"])
def test_k8s_store_dsn_comes_from_a_secret_and_no_state_is_on_an_empty_dir(
    deployment: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    # the DSN file lies in a mounted Secret
    dsn_file = PurePosixPath(env["STORE_DSN_FILE"])
    (secret,) = [n for n, path in mounts.items() if PurePosixPath(path) in dsn_file.parents]
    assert volumes[secret]["secret"]["secretName"] == "silobridge-store"
    assert "optional" not in volumes[secret]["secret"], "no store, no start"
    # emptyDir is scratch space only
    scratch = [mounts[n] for n, v in volumes.items() if "emptyDir" in v and n in mounts]
    assert scratch == ["/tmp"], scratch
    # and the config the pod runs, with the pod's environment, uses PostgreSQL
    local_dsn = tmp_path / "dsn"
    local_dsn.write_text("postgresql://silobridge@postgres:5432/silobridge\n")
    _set_env(monkeypatch, {"AMQP_URL": "amqp://guest:guest@rabbitmq:5672/",
                           "STORE_KIND": env["STORE_KIND"], "STORE_DSN_FILE": str(local_dsn)})
    store = load_config(DEPLOY / "silobridge.yaml").config.store
    assert (store.kind, store.dsn_file) == ("postgres", str(local_dsn))
