"""The Dockerfile and docker-compose.yaml agree with the project, checked statically (no Docker here)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from aps_api.settings import APISettings
from aps_pipeline.config import load_pipelines

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                    "airflow-worker"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


@pytest.fixture(scope="module")
def pinned() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def _substitute(value: str) -> str:
    """Resolve compose's ${VAR}, ${VAR:-default} and ${VAR:?message} as if every variable were unset."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*)|:\?[^}]*)?\}", lambda m: m.group(2) or f"<{m.group(1)}>", value)


def test_dockerfile_uses_the_pinned_airflow_for_python_311(pinned: dict[str, str]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    image = re.search(r"AIRFLOW_IMAGE=(\S+)", dockerfile)
    assert image is not None
    assert image.group(1) == f"apache/airflow:{pinned['apache-airflow']}-python3.11"
    for copied in re.findall(r"^COPY .*? (\S+) /opt/aps-pipeline/\S*$", dockerfile, flags=re.M):
        assert (ROOT / copied).exists(), f"Dockerfile copies {copied}, which does not exist"
    assert "pip install --no-cache-dir -r /opt/aps-pipeline/requirements.txt" in dockerfile


def test_compose_has_every_airflow_component_and_local_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert AIRFLOW_SERVICES | {"postgres", "redis", "airflow-init", "aps-api"} <= set(services)
    commands = {name: services[name]["command"] for name in AIRFLOW_SERVICES}
    assert commands == {
        "airflow-apiserver": "airflow api-server",
        "airflow-scheduler": "airflow scheduler",
        "airflow-dag-processor": "airflow dag-processor",
        "airflow-triggerer": "airflow triggerer",
        "airflow-worker": "airflow celery worker",
    }
    for local in ("s3", "aps-emulator"):
        assert services[local]["profiles"] == ["local"]
    assert services["postgres"]["image"].startswith("postgres:15")


def test_compose_commands_are_console_scripts_of_the_project(compose: dict[str, Any]) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    services = compose["services"]
    assert services["aps-api"]["command"].split()[0] in scripts
    assert services["aps-emulator"]["command"].split()[0] in scripts
    init = " ".join(services["airflow-init"]["command"])
    assert "aps-db upgrade" in init
    assert "aps-db" in scripts
    for pipeline in load_pipelines():
        assert f"pools set {pipeline.pool.name} " in init, "airflow-init must create the pipelines' pools"


def test_compose_defines_the_connections_the_pipelines_use(
    compose: dict[str, Any], pinned: dict[str, str]
) -> None:
    from airflow.models.connection import Connection

    from aps_provider.hooks.aps import config_from_connection

    env = compose["x-airflow-env"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert "apache-airflow-providers-celery" in pinned
    for pipeline in load_pipelines():
        for conn_id in (pipeline.aws_conn_id, pipeline.aps_conn_id, pipeline.results_conn_id):
            assert f"AIRFLOW_CONN_{conn_id.upper()}" in env, f"compose lacks connection {conn_id}"
    aps = json.loads(_substitute(env["AIRFLOW_CONN_APS_DEFAULT"]))
    assert aps["conn_type"] == "aps"
    config = config_from_connection(
        Connection(conn_id="aps_default", conn_type="aps", login="id", password="secret",
                   extra=json.dumps(aps["extra"]))
    )
    assert str(config.base_url).rstrip("/") == "https://developer.api.autodesk.com"
    assert config.region == "US"
    assert json.loads(_substitute(env["AIRFLOW_CONN_AWS_DEFAULT"]))["conn_type"] == "aws"


def test_compose_api_settings_are_known_to_the_api(compose: dict[str, Any]) -> None:
    fields = {f"APS_API_{name.upper()}" for name in APISettings.model_fields}
    api_env = set(compose["services"]["aps-api"]["environment"])
    assert api_env <= fields, f"unknown API settings: {api_env - fields}"
    assert "APS_API_DATABASE_URL" in api_env


def test_compose_secrets_come_from_the_environment(compose: dict[str, Any]) -> None:
    text = (ROOT / "docker-compose.yaml").read_text()
    # Every password, secret or key setting is a ${VARIABLE} reference, never a literal.
    for name, value in re.findall(r"^\s*(\w*(?:PASSWORD|SECRET|FERNET_KEY)\w*):\s*(.+)$", text, flags=re.M):
        assert value.strip().startswith("${"), f"{name} has a literal value in docker-compose.yaml"
    env_example = (ROOT / ".env.example").read_text()
    for variable in re.findall(r"\$\{(\w+):\?", text):
        assert f"{variable}=" in env_example, f".env.example does not mention {variable}"
