"""A local Airflow 3 deployment made of real components: api-server, scheduler, dag-processor, triggerer(s).

Each component is the `airflow` CLI in its own process group (ManagedProcess), configured only through
environment variables, with its metadata in PostgreSQL. Tasks run on the LocalExecutor, or on the
CeleryExecutor with `celery_workers` x `airflow celery worker` (broker: a Redis URL; results: the metadata
database), as docker-compose.yaml deploys them. Workers reach the execution API on the api-server, so its
URL (on a free port) is part of the configuration. This module never imports Airflow: it drives the CLI,
the REST API and reads the metadata tables with SQLAlchemy.

    stack = AirflowStack(home, dags_folders=[Path("dags")], database_url=pg.create_database("airflow"),
                         env={"AIRFLOW_CONN_APS_DEFAULT": json.dumps({...})})
    with stack:                      # migrate + start + wait until healthy; stop() on exit
        stack.wait_for_dag("aps_ingest")
        run_id = stack.trigger("aps_ingest", conf={"limit": 10})
        state = stack.wait_for_run("aps_ingest", run_id, timeout=600)
        if state != "success":
            print(stack.failure_report("aps_ingest", run_id))
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from aps_devstack.process import ManagedProcess, free_port

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# The executors a stack can run on, by the short names the command line takes.
EXECUTORS = {"local": "LocalExecutor", "celery": "CeleryExecutor"}
# `[core] executor` for each: the LocalExecutor's workers, and Celery's pool processes (CELERY_CONFIG), import
# the ingest's task modules before they fork task processes, so no task process imports them again
# (aps_ingest_tasks.preload: seconds of CPU per task process).
EXECUTOR_CLASSES = {"LocalExecutor": "aps_ingest_tasks.executor.PreloadingLocalExecutor",
                    "CeleryExecutor": "CeleryExecutor"}
CELERY_CONFIG = "aps_ingest_tasks.celery_config.CELERY_CONFIG"
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
# The Airflow settings every deployment shares (docker-compose.yaml loads the same file): see its comments.
TUNING_FILE = Path(__file__).resolve().parents[2] / "deploy" / "airflow-tuning.env"
TERMINAL_TI_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})


def _airflow_argv() -> list[str]:
    """The `airflow` command of the running interpreter's environment."""
    script = Path(sys.executable).with_name("airflow")
    return [str(script)] if script.exists() else [sys.executable, "-m", "airflow"]


def celery_nodes_answering(broker_url: str, timeout: float = 1.0) -> set[str]:
    """The Celery node names (`celery-worker-1@host`) that answer a ping over the broker at `broker_url`."""
    from celery import Celery

    app = Celery(broker=broker_url)
    try:
        return {node for reply in app.control.ping(timeout=timeout) for node in reply}
    finally:
        app.close()


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file as Docker Compose reads them (blank and `#` lines skipped)."""
    settings = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        settings[key.strip()] = value.strip()
    return settings


def _with_driver(url: str, driver: str) -> str:
    parsed = make_url(url)
    return parsed.set(drivername=f"postgresql+{driver}").render_as_string(hide_password=False)


class AirflowStack:
    """A local Airflow (api-server, scheduler, dag-processor, triggerers and, on Celery, workers).

    :param home: AIRFLOW_HOME (created; logs go to `home/logs`, component output to `home/<name>.out`).
    :param dags_folders: One or more folders of DAG files; each becomes a local DAG bundle.
    :param database_url: SQLAlchemy URL of an empty (or already migrated) PostgreSQL database, any driver.
    :param env: Extra environment for every component, e.g. `AIRFLOW_CONN_APS_DEFAULT` (JSON connection)
        or `AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE`. Applied last, so it can override any setting here.
    :param parallelism: Task slots of the executor (`[core] parallelism`); on Celery they are shared out
        among the workers (`[celery] worker_concurrency`).
    :param plugins_folder: `[core] plugins_folder`; default: an empty folder in `home`.
    :param api_port: Port of the api-server (default: a free one).
    :param triggerer_health_threshold: Seconds without a heartbeat after which a triggerer counts as dead
        and its triggers move to another triggerer.
    :param admin_password: Require a login: user `admin` with this password (default: no login, every
        visitor is admin, which suits throwaway stacks that nobody browses).
    :param executor: `LocalExecutor` (default) or `CeleryExecutor`.
    :param broker_url: The Celery broker (e.g. `LocalRedis.url()`); required by the CeleryExecutor.
    :param celery_workers: How many `airflow celery worker` processes run (CeleryExecutor only).
    :param triggerers: How many triggerers run; the first is named `triggerer`, the others `triggerer-2`...
    """

    def __init__(
        self,
        home: Path,
        dags_folders: Sequence[Path] | Path,
        database_url: str,
        env: Mapping[str, str] | None = None,
        parallelism: int = 8,
        plugins_folder: Path | None = None,
        api_port: int | None = None,
        triggerer_health_threshold: int = 15,
        admin_password: str | None = None,
        executor: str = "LocalExecutor",
        broker_url: str | None = None,
        celery_workers: int = 1,
        triggerers: int = 1,
    ) -> None:
        if executor not in EXECUTORS.values():
            raise ValueError(f"unknown executor {executor!r}; known: {', '.join(EXECUTORS.values())}")
        if executor == "CeleryExecutor" and not broker_url:
            raise ValueError("the CeleryExecutor needs a broker_url")
        self.executor = executor
        self.broker_url = broker_url
        self.celery_workers = celery_workers if executor == "CeleryExecutor" else 0
        self.triggerers = triggerers
        self.worker_concurrency = -(-parallelism // max(self.celery_workers, 1))  # ceiling division
        self.home = Path(home).resolve()
        folders = [dags_folders] if isinstance(dags_folders, (str, Path)) else list(dags_folders)
        self.dags_folders = [Path(folder).resolve() for folder in folders]
        self.database_url = _with_driver(database_url, "psycopg2")  # Airflow's documented driver
        self.api_port = api_port or free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.processes: dict[str, ManagedProcess] = {}
        self._restarts = 0
        self._engine: Engine | None = None
        self._token: str | None = None
        self.admin_password = admin_password
        self.home.mkdir(parents=True, exist_ok=True)
        self.plugins_folder = Path(plugins_folder) if plugins_folder else self.home / "plugins"
        self.plugins_folder.mkdir(parents=True, exist_ok=True)
        self.env = self._environment(parallelism, triggerer_health_threshold, env or {})

    # -- configuration ---------------------------------------------------------------------------------

    def _environment(self, parallelism: int, triggerer_health_threshold: int,
                     extra: Mapping[str, str]) -> dict[str, str]:
        # Start from the caller's environment minus any Airflow settings, so nothing leaks in by accident.
        inherited = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "AIRFLOW_HOME")
        env = {k: v for k, v in os.environ.items() if not k.startswith(inherited)}
        bundles = [
            {"name": "dags-folder" if i == 0 else f"dags-folder-{i}",
             "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
             "kwargs": {"path": str(folder), "refresh_interval": 5}}
            for i, folder in enumerate(self.dags_folders)
        ]
        settings = {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folders[0]),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.plugins_folder),
            "AIRFLOW__CORE__EXECUTOR": EXECUTOR_CLASSES[self.executor],
            **self._celery_settings(),
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(max(parallelism, 16) * 4),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "AIRFLOW__CORE__AUTH_MANAGER":
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            **self._login_settings(),
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "5",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database_url,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": _with_driver(self.database_url, "asyncpg"),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__API__WORKERS": "1",
            # Shared by every component: the scheduler signs task tokens the api-server must accept.
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            **read_env_file(TUNING_FILE),  # what every deployment shares (min_file_process_interval, ...)
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "300",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "5",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(triggerer_health_threshold),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
            # Never the fixed defaults 8793/8794: other stacks may run on this machine at the same time.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "PYTHONUNBUFFERED": "1",
        }
        env.update(settings)
        env.update(extra)
        return env

    # -- lifecycle ---------------------------------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run one `airflow` CLI command against this stack."""
        result = subprocess.run([*_airflow_argv(), *args], env=self.env, cwd=self.home, capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"`airflow {' '.join(args)}` exited with {result.returncode}:\n"
                               f"{(result.stdout + result.stderr)[-3000:]}")
        return result

    def migrate(self) -> None:
        """Create or upgrade the metadata schema (`airflow db migrate`)."""
        self.cli("db", "migrate", timeout=600)

    @property
    def components(self) -> list[str]:
        """The names of every process this stack runs, in start order."""
        return [
            *COMPONENTS,
            *(f"triggerer-{i}" for i in range(2, self.triggerers + 1)),
            *(f"celery-worker-{i}" for i in range(1, self.celery_workers + 1)),
        ]

    def start(self, components: Iterable[str] | None = None, timeout: float = 240) -> AirflowStack:
        """Migrate the database, start the components and wait until the api-server reports them healthy."""
        names = list(self.components if components is None else components)
        self.migrate()
        for name in names:
            self.start_component(name)
        self.wait_healthy(timeout=timeout, components=names)
        return self

    def _command(self, name: str) -> tuple[list[str], dict[str, str]]:
        """The argv of component `name` and the environment it adds to the stack's."""
        airflow = _airflow_argv()
        if name == "api-server":
            return [*airflow, name, "--host", "127.0.0.1", "--port", str(self.api_port)], {}
        if name in ("scheduler", "dag-processor"):
            return [*airflow, name], {}
        # Triggerers and workers run side by side on one machine: the first of each serves its logs on the
        # port the stack configures (where the api-server looks), every other one on a port of its own.
        if name == "triggerer" or name.startswith("triggerer-"):
            own_port = {"AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())}
            return [*airflow, "triggerer"], own_port if name != "triggerer" else {}
        # The workers also need distinct Celery node names; they serve the default queue.
        own_port = {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}
        return ([*airflow, "celery", "worker", "--celery-hostname", f"{name}@%h"],
                own_port if name != "celery-worker-1" else {})

    def start_component(self, name: str) -> ManagedProcess:
        if name not in self.components:
            raise ValueError(f"unknown Airflow component {name!r}; known: {', '.join(self.components)}")
        argv, env = self._command(name)
        process = ManagedProcess(f"airflow-{name}", argv, self.home / f"{name}.out", env={**self.env, **env},
                                 cwd=self.home)
        self.processes[name] = process
        return process

    def wait_healthy(self, timeout: float = 240, components: Iterable[str] | None = None) -> None:
        """Wait until the api-server answers, every started component has a fresh heartbeat and every
        Celery worker answers a ping over the broker."""
        names = list(self.components if components is None else components)
        wanted = {"scheduler", "triggerer", "dag_processor", "metadatabase"} & {
            c.replace("-", "_") for c in [*names, "metadatabase"]}
        workers = [name for name in names if name.startswith("celery-worker-")]
        triggerers = sum(1 for name in names if name.startswith("triggerer"))
        deadline = time.monotonic() + timeout
        last: Any = "no answer"
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                response = httpx.get(f"{self.api_url}/api/v2/monitor/health", timeout=5)
                if response.status_code == 200:
                    health = response.json()
                    last = {name: (health.get(name) or {}).get("status") for name in wanted}
                    if all(status == "healthy" for status in last.values()):
                        # The health endpoint counts one triggerer and no Celery worker: ask for the rest.
                        last["triggerers"] = self.live_triggerers()
                        nodes = celery_nodes_answering(str(self.broker_url)) if workers else set()
                        last["workers"] = sorted(nodes)
                        answering = {node.partition("@")[0] for node in nodes}
                        if last["triggerers"] >= triggerers and answering >= set(workers):
                            return
                else:
                    last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(1)
        raise TimeoutError(f"Airflow not healthy within {timeout:.0f}s: {last}\n{self._tails()}")

    def describe(self) -> str:
        """Which executor runs the tasks, with how many workers and triggerers (for `make up`)."""
        parts = [f"{self.triggerers} triggerer(s)"]
        if self.executor == "CeleryExecutor":
            parts.insert(0, f"{self.celery_workers} celery worker(s) x {self.worker_concurrency} slots")
        return f"{self.executor}: {', '.join(parts)}"

    def live_triggerers(self) -> int:
        """How many triggerers are running with a heartbeat younger than the health threshold."""
        threshold = float(self.env["AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD"])
        query = text("SELECT count(*) FROM job WHERE job_type = 'TriggererJob' AND state = 'running' "
                     "AND latest_heartbeat > now() - make_interval(secs => :s)")
        with self.engine.connect() as conn:
            return int(conn.execute(query, {"s": threshold}).scalar_one())

    def restart_triggerer(self, kill: bool = True) -> ManagedProcess:
        """Stop the triggerer (SIGKILL of its whole process group by default) and start a new one."""
        old = self.processes.get("triggerer")
        if old is not None:
            old.kill() if kill else old.stop()
        self._restarts += 1
        argv, env = self._command("triggerer")
        name = f"triggerer-restart-{self._restarts}"
        process = ManagedProcess(f"airflow-{name}", argv, self.home / f"{name}.out", env={**self.env, **env},
                                 cwd=self.home)
        self.processes["triggerer"] = process
        return process

    def kill_task(self, dag_id: str, run_id: str, task_id: str) -> list[int]:
        """SIGKILL the processes running the run's `task_id` instances (all map indexes), as the kernel's OOM
        killer would: the task runner only, its supervisor sees it die. Returns the pids killed."""
        import psutil

        with self.engine.connect() as conn:
            ids = {str(row.id) for row in conn.execute(text(
                "SELECT id FROM task_instance WHERE dag_id = :d AND run_id = :r AND task_id = :t "
                "AND state = 'running'"), {"d": dag_id, "r": run_id, "t": task_id})}
        titles = {f"airflow worker -- {ti_id}" for ti_id in ids}  # the task runner's setproctitle
        killed = []
        for process in psutil.process_iter(["pid", "cmdline"]):
            title = " ".join(process.info["cmdline"] or [])
            if any(title.startswith(wanted) for wanted in titles):
                process.kill()
                killed.append(process.info["pid"])
        return killed

    def wait_for_triggerer(self, started_after: float, timeout: float = 120) -> None:
        """Wait until a triggerer that started after `started_after` (epoch seconds) heartbeats."""
        deadline = time.monotonic() + timeout
        query = text("SELECT count(*) FROM job WHERE job_type = 'TriggererJob' AND state = 'running' "
                     "AND start_date > to_timestamp(:t) AND latest_heartbeat > start_date")
        while time.monotonic() < deadline:
            self._check_alive()
            with self.engine.connect() as conn:
                if conn.execute(query, {"t": started_after}).scalar():
                    return
            time.sleep(0.5)
        raise TimeoutError(f"no new triggerer heartbeat within {timeout:.0f}s:\n{self._tails()}")

    def stop(self) -> None:
        """Stop every component: the scheduler first, so no new work is started while the rest go down, then
        the others in reverse start order (the api-server last: workers report to it until they exit)."""
        others = [name for name in reversed(self.processes) if name != "scheduler"]
        for name in ["scheduler", *others]:
            process = self.processes.pop(name, None)
            if process is not None:
                process.stop()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> AirflowStack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if not process.alive():
                raise RuntimeError(f"Airflow {name} exited with {process.returncode()}:\n"
                                   f"{process.log_tail(60)}")

    def _tails(self) -> str:
        return "\n".join(f"--- {name} ---\n{proc.log_tail(25)}" for name, proc in self.processes.items())

    def _celery_settings(self) -> dict[str, str]:
        """The `[celery]` keys docker-compose.yaml sets, plus the worker slots: results in the metadata DB."""
        if self.executor != "CeleryExecutor":
            return {}
        return {
            "AIRFLOW__CELERY__BROKER_URL": str(self.broker_url),
            "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": CELERY_CONFIG,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{self.database_url}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
        }

    def _login_settings(self) -> dict[str, str]:
        if self.admin_password is None:
            return {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True"}
        passwords = self.home / "simple_auth_manager_passwords.json"
        passwords.write_text(json.dumps({"admin": self.admin_password}))
        passwords.chmod(0o600)
        return {
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        }

    # -- REST (simple auth manager) ------------------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Call the public REST API (`/api/v2/...`) with a token from the simple auth manager."""
        if self._token is None:
            if self.admin_password is None:
                response = httpx.get(f"{self.api_url}/auth/token", timeout=30)
            else:
                response = httpx.post(f"{self.api_url}/auth/token", timeout=30,
                                      json={"username": "admin", "password": self.admin_password})
            response.raise_for_status()
            self._token = response.json()["access_token"]
        headers = {"Authorization": f"Bearer {self._token}"}
        return httpx.request(method, f"{self.api_url}{path}", headers=headers, timeout=60, **kwargs)

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        """Wait until the dag-processor has parsed `dag_id` (and report its import errors if it fails)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if self.api("GET", f"/api/v2/dags/{dag_id}").status_code == 200:
                return
            time.sleep(1)
        errors = self.api("GET", "/api/v2/importErrors").json().get("import_errors", [])
        raise TimeoutError(f"DAG {dag_id!r} not parsed within {timeout:.0f}s; import errors: "
                           f"{json.dumps(errors, indent=1)[:3000]}")

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False}).raise_for_status()

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None, run_id: str | None = None) -> str:
        """Unpause `dag_id` and start a manual run; returns its run id."""
        self.unpause(dag_id)
        run_id = run_id or f"manual__{uuid.uuid4().hex[:12]}"
        response = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns",
                            json={"dag_run_id": run_id, "logical_date": None, "conf": dict(conf or {})})
        if response.status_code >= 300:
            raise RuntimeError(f"triggering {dag_id} failed: HTTP {response.status_code} "
                               f"{response.text[:500]}")
        return run_id

    # -- metadata database ---------------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(self.database_url, pool_size=2, pool_pre_ping=True)
        return self._engine

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(text("SELECT state FROM dag_run WHERE dag_id = :d AND run_id = :r"),
                                {"d": dag_id, "r": run_id}).scalar()

    def task_states(self, dag_id: str, run_id: str) -> dict[tuple[str, int], str | None]:
        """{(task_id, map_index): state} of a run's task instances."""
        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT task_id, map_index, state FROM task_instance "
                                     "WHERE dag_id = :d AND run_id = :r"), {"d": dag_id, "r": run_id})
            return {(row.task_id, row.map_index): row.state for row in rows}

    def state_counts(self, dag_id: str | None = None) -> dict[str, int]:
        """How many task instances are in each state right now (optionally of one DAG)."""
        query = "SELECT coalesce(state, 'none') AS state, count(*) AS n FROM task_instance"
        params: dict[str, Any] = {}
        if dag_id:
            query += " WHERE dag_id = :d"
            params["d"] = dag_id
        with self.engine.connect() as conn:
            return {row.state: row.n for row in conn.execute(text(query + " GROUP BY 1"), params)}

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600, poll: float = 1.0) -> str:
        """Wait until the run is success or failed; returns the state (TimeoutError after `timeout`)."""
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in TERMINAL_RUN_STATES:
                return state
            self._check_alive()
            time.sleep(poll)
        raise TimeoutError(f"run {dag_id}/{run_id} still {state!r} after {timeout:.0f}s; tasks: "
                           f"{self.task_states(dag_id, run_id)}")

    def wait_for_task_state(self, dag_id: str, run_id: str, task_id: str, states: Iterable[str],
                            timeout: float = 300, map_index: int = -1, poll: float = 0.5) -> str:
        """Wait until a task instance is in one of `states`; fails early if it ends in another state."""
        wanted = set(states)
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.task_states(dag_id, run_id).get((task_id, map_index))
            if state in wanted:
                return state
            if state in TERMINAL_TI_STATES:
                raise RuntimeError(f"{task_id} ended {state!r} while waiting for {sorted(wanted)}:\n"
                                   f"{self.failure_report(dag_id, run_id)}")
            self._check_alive()
            time.sleep(poll)
        raise TimeoutError(f"{task_id} still {state!r} after {timeout:.0f}s (wanted {sorted(wanted)})")

    # -- logs ---------------------------------------------------------------------------------------------

    def task_logs(self, dag_id: str, run_id: str, task_id: str | None = None) -> dict[Path, str]:
        """Every log file of a run's tasks (task attempts and trigger logs), by path."""
        run_dir = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
        pattern = f"task_id={task_id}/**/*" if task_id else "**/*"
        return {path: path.read_text(errors="replace") for path in sorted(run_dir.glob(pattern))
                if path.is_file()}

    def failure_report(self, dag_id: str, run_id: str, lines: int = 40) -> str:
        """Task states plus the log tails of the tasks that did not succeed: for assertion messages."""
        states = self.task_states(dag_id, run_id)
        parts = [f"run {dag_id}/{run_id}: {self.run_state(dag_id, run_id)}; tasks: {states}"]
        for (task_id, _), state in states.items():
            if state in ("success", "skipped"):
                continue
            for path, content in self.task_logs(dag_id, run_id, task_id).items():
                tail = "\n".join(content.splitlines()[-lines:])
                parts.append(f"--- {path.relative_to(self.home)} ---\n{tail}")
        return "\n".join(parts)

    def destroy(self) -> None:
        """Stop and delete AIRFLOW_HOME (logs included)."""
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)
