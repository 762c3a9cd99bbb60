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


def _closing_brace(text: str, start: int) -> int:
    """Index of the `}` closing the `${` at `start`, counting every `{` as Compose does."""
    depth = 0
    for index in range(start + 1, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    raise ValueError(f"unclosed ${{ in {text!r}")


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's interpolation of one string: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e},
    ${VAR:+r}, ${VAR+r}, with nested operands (docs.docker.com/reference/compose-file/interpolation)."""
    out: list[str] = []
    index = 0
    while index < len(value):
        if value.startswith("$$", index):
            out.append("$")
            index += 2
        elif value.startswith("${", index):
            end = _closing_brace(value, index)
            match = re.fullmatch(r"([A-Za-z_]\w*)(?:(:?)([-+?])(.*))?", value[index + 2:end], flags=re.S)
            assert match is not None, f"invalid interpolation in {value!r}"
            name, colon, operator, operand = match.groups()
            present = name in env and (env[name] != "" or not colon)
            if operator == "-":
                out.append(env[name] if present else _interpolate(operand, env))
            elif operator == "+":
                out.append(_interpolate(operand, env) if present else "")
            elif operator == "?":
                if not present:
                    raise ValueError(f"required variable {name} is missing a value: {operand}")
                out.append(env[name])
            else:
                out.append(env.get(name, ""))
            index = end + 1
        elif (named := re.match(r"\$([A-Za-z_]\w*)", value[index:])) is not None:
            out.append(env.get(named.group(1), ""))
            index += named.end()
        else:
            out.append(value[index])
            index += 1
    return "".join(out)


def _resolve(node: Any, env: dict[str, str]) -> Any:
    """Every string of a parsed compose file interpolated (values only; keys are not, as in Compose)."""
    if isinstance(node, dict):
        return {key: _resolve(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(value, env) for value in node]
    return _interpolate(node, env) if isinstance(node, str) else node


def _variables(node: Any) -> set[str]:
    """The variables the strings of a parsed YAML document refer to (comments do not count)."""
    if isinstance(node, dict):
        return set().union(*map(_variables, node.values()))
    if isinstance(node, list):
        return set().union(*map(_variables, node))
    if isinstance(node, str):
        return set(re.findall(r"\$\{(\w+)", node.replace("$$", ""))) | set(
            re.findall(r"\$([A-Za-z_]\w*)", node.replace("$$", "")))
    return set()


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    """.env.example as Compose would read it as .env (no quoting is used there)."""
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def _with(env_example: dict[str, str], **overrides: str) -> dict[str, str]:
    return {**env_example, **overrides}


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
    aps = json.loads(_interpolate(env["AIRFLOW_CONN_APS_DEFAULT"], {}))
    assert aps["conn_type"] == "aps"
    config = config_from_connection(
        Connection(conn_id="aps_default", conn_type="aps", login="id", password="secret",
                   extra=json.dumps(aps["extra"]))
    )
    assert str(config.base_url).rstrip("/") == "https://developer.api.autodesk.com"
    assert config.region == "US"
    assert json.loads(_interpolate(env["AIRFLOW_CONN_AWS_DEFAULT"], {}))["conn_type"] == "aws"


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


def test_the_test_interpolation_follows_compose() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert _interpolate("${SET:-d}${EMPTY:-d}${UNSET:-d}${EMPTY-d}${UNSET-d}", env) == "xddd"
    assert _interpolate("${SET:+[${SET}]}${EMPTY:+r}${UNSET:+r}${EMPTY+r}", env) == "[x]r"
    assert _interpolate("$$SET $SET ${UNSET:-${SET}}", env) == "$SET x x"
    with pytest.raises(ValueError, match="EMPTY"):
        _interpolate("${EMPTY:?set it}", env)


def test_compose_resolves_with_env_example(compose: dict[str, Any], env_example: dict[str, str]) -> None:
    resolved = _resolve(compose, env_example)
    assert "${" not in json.dumps(resolved)
    for name, value in resolved["x-airflow-env"].items():
        if name.startswith("AIRFLOW_CONN_") and value.startswith("{"):
            json.loads(value)  # the JSON connections stay JSON once interpolated
    # Every variable the compose file reads is documented (set or commented out) in .env.example.
    example = (ROOT / ".env.example").read_text()
    undocumented = {v for v in _variables(compose) if not re.search(rf"^#?\s*{v}=", example, flags=re.M)}
    assert not undocumented, f".env.example does not mention {sorted(undocumented)}"


def _airflow_bool(value: str) -> bool:
    from airflow.configuration import AirflowConfigParser

    parser = AirflowConfigParser()
    parser.read_dict({"operators": {"default_deferrable": value}})
    return parser.getboolean("operators", "default_deferrable")


def test_every_airflow_component_defers_like_the_local_stack(compose: dict[str, Any]) -> None:
    from types import SimpleNamespace

    from aps_devstack.s3 import S3Server
    from aps_devstack.stack import LocalStack

    services = compose["services"]
    for name in AIRFLOW_SERVICES | {"airflow-init"}:
        value = services[name]["environment"].get("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE")
        assert value is not None, f"{name}: sensors would poll from a worker slot instead of deferring"
        assert _airflow_bool(value) is True, name

    # What the local stack sets for its Airflow, compose sets too.
    local = LocalStack(
        workdir=ROOT,
        postgres=SimpleNamespace(port=5432, superuser="postgres"),  # type: ignore[arg-type]
        s3=S3Server(endpoint_url="http://127.0.0.1:5000"),
        emulator=SimpleNamespace(client_id="id", client_secret="secret",  # type: ignore[arg-type]
                                 base_url="http://127.0.0.1:8090"),
        results_url="postgresql://unused",
    ).airflow_env()
    env = compose["x-airflow-env"]
    assert set(local) <= set(env), f"set by the local stack, not by compose: {sorted(set(local) - set(env))}"
    assert _airflow_bool(env["AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"]) is _airflow_bool(
        local["AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"])


@pytest.mark.parametrize(("endpoint", "expected"), [
    (None, None),  # not in .env at all
    ("", None),  # as in .env.example: AWS itself
    ("http://s3:5000", "http://s3:5000"),  # the local profile's S3 server
])
def test_aws_connection_has_an_endpoint_only_when_s3_endpoint_url_is_set(
    compose: dict[str, Any], env_example: dict[str, str], monkeypatch: pytest.MonkeyPatch,
    endpoint: str | None, expected: str | None,
) -> None:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    env = {k: v for k, v in env_example.items() if k != "S3_ENDPOINT_URL"}
    if endpoint is not None:
        env["S3_ENDPOINT_URL"] = endpoint
    connection = _resolve(compose, env)["x-airflow-env"]["AIRFLOW_CONN_AWS_DEFAULT"]
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", connection)
    hook = S3Hook(aws_conn_id="aws_default")
    client = hook.get_conn()  # an empty endpoint_url fails here: "ValueError: Invalid endpoint: "
    assert client.meta.endpoint_url == (expected or "https://s3.amazonaws.com")
    assert hook.conn_config.endpoint_url == expected
    assert hook.conn_config.get_service_endpoint_url("s3") == expected
    assert ("endpoint_url" in json.loads(connection)["extra"]) is (expected is not None)


def test_local_profile_creates_the_landing_buckets(
    compose: dict[str, Any], env_example: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.server import ThreadedMotoServer

    from aps_devstack.process import free_port
    from aps_devstack.s3 import S3Server

    services = _resolve(compose, _with(env_example, APS_LANDING_BUCKET="acme-landing"))["services"]
    s3, init = services["s3"], services["s3-init"]
    assert init["profiles"] == s3["profiles"] == ["local"]
    assert init["depends_on"] == {"s3": {"condition": "service_healthy"}}
    port = int(s3["command"].split("-p ")[1].split()[0])
    assert f"localhost:{port}/moto-api/" in " ".join(s3["healthcheck"]["test"])
    assert re.search(rf"^#.*S3_ENDPOINT_URL=http://s3:{port}\b", (ROOT / ".env.example").read_text(), re.M)
    assert init["command"][:2] == ["python", "-c"]
    code = init["command"][2]
    assert f'"http://s3:{port}"' in code

    # Run the job's code against an in-process S3 server, with the job's environment.
    local_port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=local_port)
    server.start()
    try:
        for name, value in init["environment"].items():
            monkeypatch.setenv(name, value)
        code = code.replace(f"http://s3:{port}", f"http://127.0.0.1:{local_port}")
        exec(compile(code, "s3-init", "exec"), {})
        buckets = S3Server(endpoint_url=f"http://127.0.0.1:{local_port}").client().list_buckets()["Buckets"]
    finally:
        server.stop()
    assert {b["Name"] for b in buckets} == {"acme-landing"}


def test_compose_passes_every_variable_the_pipelines_file_reads(
    compose: dict[str, Any], env_example: dict[str, str]
) -> None:
    document = yaml.safe_load((ROOT / "include" / "aps_pipeline" / "pipelines.yaml").read_text())
    # The connection ids stay at their defaults: compose defines the connections under those ids.
    read = _variables(document) - {"APS_AWS_CONN_ID", "APS_CONN_ID", "APS_RESULTS_CONN_ID"}
    assert read
    env = compose["x-airflow-env"]
    for name in read:
        assert name in env, f"compose does not pass {name} from .env"
        assert f"${{{name}" in env[name], f"compose sets {name} instead of passing it from .env"

    # Unset in .env: the pipelines file's own defaults.
    resolved = _resolve(compose, env_example)["x-airflow-env"]
    assert load_pipelines(env=resolved) == load_pipelines(env={})
    # Set in .env: the DAGs see them, and the region agrees with the aps_default connection's.
    custom = _with(env_example, APS_REGION="EMEA", APS_BUCKET_KEY="acme-ingest", APS_INGEST_SCHEDULE="none",
                   APS_LANDING_BUCKET="acme-landing", APS_POLL_INTERVAL="30", APS_POLL_MAX_INTERVAL="300")
    resolved = _resolve(compose, custom)["x-airflow-env"]
    (pipeline,) = load_pipelines(env=resolved)
    assert (pipeline.aps.region, pipeline.aps.bucket_key, pipeline.schedule) == ("EMEA", "acme-ingest", None)
    assert (pipeline.landing.bucket, pipeline.poll_interval, pipeline.poll_max_interval) == (
        "acme-landing", 30, 300)
    assert json.loads(resolved["AIRFLOW_CONN_APS_DEFAULT"])["extra"]["region"] == "EMEA"
    assert pipeline.events is None  # no queue in .env: the schedule only


def test_an_events_queue_in_env_makes_runs_event_driven(
    compose: dict[str, Any], env_example: dict[str, str]
) -> None:
    queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/acme-landing-events"
    resolved = _resolve(compose, _with(env_example, APS_EVENTS_QUEUE_URL=queue))["x-airflow-env"]
    (pipeline,) = load_pipelines(env=resolved)
    assert pipeline.events is not None
    assert (pipeline.events.queue_url, pipeline.events_conn_id) == (queue, "aws_default")
    assert pipeline.schedule == "@hourly"  # the net for lost events stays


def test_services_outside_airflow_bypass_the_airflow_entrypoint(compose: dict[str, Any]) -> None:
    # The image's /entrypoint runs anything but `bash`, `python` and `airflow ...` as `airflow <command>`.
    image = compose["x-aps-image"]["image"]
    for name, service in compose["services"].items():
        if service.get("image") != image:
            continue
        command = service["command"]
        first = (command if isinstance(command, list) else command.split())[0]
        entrypoint = service.get("entrypoint")
        if entrypoint is None:
            assert first in ("airflow", "bash", "python"), f"{name}: the image would run `airflow {first}`"
        else:
            assert "/entrypoint" not in str(entrypoint), name
        if name not in AIRFLOW_SERVICES | {"airflow-init"}:
            assert entrypoint == ["/usr/bin/dumb-init", "--"], f"{name} is not an Airflow component"


def test_the_local_celery_stack_sets_the_executor_keys_compose_sets(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    from aps_devstack.airflow import EXECUTORS, AirflowStack

    env = compose["x-airflow-env"]
    local = AirflowStack(tmp_path / "home", tmp_path, "postgresql://airflow@127.0.0.1:5432/airflow",
                         executor=EXECUTORS["celery"], broker_url="redis://127.0.0.1:6379/0").env
    assert local["AIRFLOW__CORE__EXECUTOR"] == env["AIRFLOW__CORE__EXECUTOR"]
    celery_keys = {key for key in env if key.startswith("AIRFLOW__CELERY__")}
    assert celery_keys >= {"AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__RESULT_BACKEND"}
    assert celery_keys <= set(local), f"compose sets, the local stack does not: {celery_keys - set(local)}"
    for key in ("AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__RESULT_BACKEND"):
        # The same kind of broker (Redis) and result backend (the metadata PostgreSQL, through SQLAlchemy).
        assert local[key].split("://")[0].split("+")[:2] == env[key].split("://")[0].split("+")[:2], key
    assert compose["services"]["redis"]["image"].startswith("redis:")


def test_airflow_cpu_settings_have_one_home_for_compose_and_the_local_stack(compose: dict[str, Any],
                                                                            tmp_path: Path) -> None:
    from aps_devstack.airflow import TUNING_FILE, AirflowStack, read_env_file

    tuning = read_env_file(TUNING_FILE)
    assert tuning
    assert all(key.startswith("AIRFLOW__") for key in tuning)
    services = compose["services"]
    for name in AIRFLOW_SERVICES:
        env_files = services[name].get("env_file") or []
        assert [ROOT / path for path in env_files] == [TUNING_FILE], name
        overridden = set(tuning) & set(services[name].get("environment") or {})
        assert not overridden, f"{name} sets {sorted(overridden)} again: the tuning file is their home"
    local = AirflowStack(tmp_path, dags_folders=ROOT / "dags", database_url="postgresql://unused/airflow").env
    assert {key: local[key] for key in tuning} == tuning
    text = TUNING_FILE.read_text()
    for key in tuning:  # each setting says why, on the comment lines just above it
        assert re.search(rf"#[^\n]*\n{re.escape(key)}=", text), f"{key} has no comment saying why"
