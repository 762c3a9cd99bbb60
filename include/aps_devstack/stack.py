"""The whole local deployment in one object: PostgreSQL, S3 server, APS emulator, Airflow, results API.

`make demo`, `make up`, the end-to-end tests and the benchmarks all build their world with `LocalStack`, so
they exercise the same wiring: the Airflow connections the pipelines file names (`aws_default`,
`aps_default`, `aps_results`) point at the local services exactly as they would at S3, APS and a managed
PostgreSQL in production.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from aps_devstack.airflow import AirflowStack
from aps_devstack.emulator import EmulatorServer, start_emulator
from aps_devstack.postgres import LocalPostgres
from aps_devstack.process import ManagedProcess, free_port, wait_for_http
from aps_devstack.redis_server import LocalRedis
from aps_devstack.s3 import S3Server, start_s3_server

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO_ROOT / "dags"
LANDING_BUCKET = "aps-landing"
LANDING_PREFIX = "incoming/"
EVENTS_QUEUE = "aps-landing-events"  # gets the landing bucket's s3:ObjectCreated:* notifications
RESULTS_DB = "aps_results"
READER_LOGIN = "aps_api"
SECRETS_CONNECTIONS_PREFIX = "airflow/connections"  # Secrets Manager names: airflow/connections/<conn_id>
SECRETS_ENV = "APS_DEVSTACK_SECRETS"  # "secretsmanager": `make demo/up` keep connections in Secrets Manager


def secrets_manager_requested() -> bool:
    return os.environ.get(SECRETS_ENV, "") == "secretsmanager"


def _postgres_connection(url: str) -> dict[str, Any]:
    parsed = make_url(url)
    return {"conn_type": "postgres", "host": parsed.host, "port": parsed.port, "login": parsed.username,
            "password": parsed.password, "schema": parsed.database}


@dataclass
class LocalStack:
    """Start with `LocalStack.start(workdir)`; `stop()` stops everything it started."""

    workdir: Path
    postgres: LocalPostgres
    s3: S3Server
    emulator: EmulatorServer
    results_url: str
    events_queue_url: str | None = None  # the SQS queue on the S3 server that starts event-driven runs
    airflow: AirflowStack | None = None
    api: ManagedProcess | None = None
    api_url: str | None = None
    redis: LocalRedis | None = None  # the Celery broker, when Airflow runs on the CeleryExecutor
    # The results database's own cluster (restartable without touching Airflow's); None: it shares `postgres`.
    results_postgres: LocalPostgres | None = None
    reader_password: str = field(default_factory=lambda: secrets.token_urlsafe(16), repr=False)

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        emulator_env: dict[str, str] | None = None,
        postgres_port: int | None = None,
        events: bool = False,
        results_cluster: bool = False,
    ) -> LocalStack:
        """With `events`, the landing bucket notifies an SQS queue and the pipeline's runs start from it.
        With `results_cluster`, the results database gets a PostgreSQL cluster of its own (chaos tests restart
        it in the middle of a load while Airflow's metadata database stays up)."""
        from aps_results.migrate import upgrade
        from aps_results.roles import create_reader_login

        workdir.mkdir(parents=True, exist_ok=True)
        postgres = LocalPostgres.start(base_dir=workdir / "pg", port=postgres_port)
        s3 = emulator = results_postgres = None
        try:
            if results_cluster:
                results_postgres = LocalPostgres.start(base_dir=workdir / "pg-results")
            results_url = (results_postgres or postgres).create_database(RESULTS_DB)
            upgrade(results_url)
            s3 = start_s3_server(workdir / "logs")
            s3.make_bucket(LANDING_BUCKET)
            events_queue_url = s3.make_notified_queue(LANDING_BUCKET, EVENTS_QUEUE) if events else None
            emulator = start_emulator(workdir / "logs", env=emulator_env)
            stack = cls(workdir=workdir, postgres=postgres, s3=s3, emulator=emulator, results_url=results_url,
                        events_queue_url=events_queue_url, results_postgres=results_postgres)
            create_reader_login(results_url, READER_LOGIN, stack.reader_password)
            return stack
        except BaseException:
            for part in (emulator, s3, results_postgres):
                if part is not None:
                    part.stop()
            postgres.stop()
            raise

    # -- configuration shared by Airflow and the API ----------------------------------------------------

    @property
    def results_cluster(self) -> LocalPostgres:
        """The cluster that holds the results database."""
        return self.results_postgres or self.postgres

    def connections(self, airflow_db_url: str | None = None) -> dict[str, str]:
        """The Airflow connections the pipelines file names, by id, in Airflow's JSON form (with
        `airflow_db_url`, also `airflow_metadata`: the maintenance DAG's way to Airflow's own database)."""
        aps_connection = {
            "conn_type": "aps",
            "login": self.emulator.client_id,
            "password": self.emulator.client_secret,
            "extra": {"base_url": self.emulator.base_url, "region": "US"},
        }
        results_connection = {
            "conn_type": "postgres",
            "host": "127.0.0.1",
            "port": self.results_cluster.port,
            "login": self.results_cluster.superuser,
            "schema": RESULTS_DB,
        }
        reader_connection = {**results_connection, "login": READER_LOGIN, "password": self.reader_password}
        metadata = {}
        if airflow_db_url:
            metadata["airflow_metadata"] = json.dumps(_postgres_connection(airflow_db_url))
        return {
            "aws_default": self.s3.airflow_conn_uri(),
            "aps_default": json.dumps(aps_connection),
            "aps_results": json.dumps(results_connection),
            # The run page in the UI reads with the read-only login, as the results API does.
            "aps_results_reader": json.dumps(reader_connection),
            **metadata,
        }

    def airflow_env(
        self, *, secrets_manager: bool = False, airflow_db_url: str | None = None,
    ) -> dict[str, str]:
        """Connections and pipeline settings, exactly as a production deployment would set them.

        With `secrets_manager`, the connections are stored in the S3 server's Secrets Manager and Airflow
        reads them through the Amazon provider's SecretsManagerBackend: none is in Airflow's environment or
        database. Otherwise they are `AIRFLOW_CONN_*` variables.
        """
        if secrets_manager:
            for conn_id, value in self.connections(airflow_db_url).items():
                self.s3.put_secret(f"{SECRETS_CONNECTIONS_PREFIX}/{conn_id}", value)
            connections = self.s3.secrets_backend_env(SECRETS_CONNECTIONS_PREFIX)
        else:
            connections = {f"AIRFLOW_CONN_{conn_id.upper()}": value
                           for conn_id, value in self.connections(airflow_db_url).items()}
        return {
            **connections,
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
            "APS_LANDING_BUCKET": LANDING_BUCKET,
            # Runs start when someone triggers them (the demo, a test, an operator in the UI).
            "APS_INGEST_SCHEDULE": os.environ.get("APS_INGEST_SCHEDULE", "none"),
            # Events alone start runs here (no schedule): the pipelines file refuses that unless told.
            "APS_EVENTS_WITHOUT_SCHEDULE": "true",
            "APS_LANDING_PREFIX": LANDING_PREFIX,
            # A landed file starts a run within seconds (S3 notification -> SQS -> the triggerer's watcher).
            "APS_EVENTS_QUEUE_URL": self.events_queue_url or "",
            "APS_EVENTS_AWS_CONN_ID": "aws_default",
            # Short waits on the emulator: translations take seconds there, not minutes.
            "APS_POLL_INTERVAL": os.environ.get("APS_POLL_INTERVAL", "2"),
            "APS_POLL_MAX_INTERVAL": os.environ.get("APS_POLL_MAX_INTERVAL", "5"),
        }

    def reader_url(self) -> str:
        return (
            f"postgresql+psycopg://{READER_LOGIN}:{self.reader_password}@127.0.0.1:{self.results_cluster.port}/"
            f"{RESULTS_DB}"
        )

    def api_env(self) -> dict[str, str]:
        return {
            "APS_API_DATABASE_URL": self.reader_url(),
            "APS_API_APS_BASE_URL": self.emulator.base_url,
            "APS_API_APS_CLIENT_ID": self.emulator.client_id,
            "APS_API_APS_CLIENT_SECRET": self.emulator.client_secret,
        }

    # -- optional parts ---------------------------------------------------------------------------------

    def start_airflow(
        self, *, api_port: int | None = None, parallelism: int = 8, extra_env: dict[str, str] | None = None,
        admin_password: str | None = None, executor: str = "LocalExecutor", celery_workers: int = 1,
        triggerers: int = 1, secrets_manager: bool = False,
    ) -> AirflowStack:
        """Start Airflow on its own metadata database; on the CeleryExecutor, with a Redis broker first."""
        airflow_db = self.postgres.create_database("airflow")
        if executor == "CeleryExecutor" and self.redis is None:
            self.redis = LocalRedis.start(self.workdir / "redis")
        self.airflow = AirflowStack(
            self.workdir / "airflow",
            dags_folders=[DAGS_FOLDER],
            database_url=airflow_db,
            env={**self.airflow_env(secrets_manager=secrets_manager, airflow_db_url=airflow_db),
                 **(extra_env or {})},
            parallelism=parallelism,
            api_port=api_port,
            admin_password=admin_password,
            executor=executor,
            broker_url=self.redis.url() if self.redis is not None else None,
            celery_workers=celery_workers,
            triggerers=triggerers,
        )
        self.airflow.start()
        return self.airflow

    def start_api(self, port: int | None = None, webhook_secret: str | None = None) -> str:
        """Serve the results API; with `webhook_secret`, its APS webhook receiver too (writing through the
        results database's owner: a stand-in's shortcut for a login in role aps_webhook_receiver)."""
        port = port or free_port()
        webhooks = {"APS_API_WEBHOOK_SECRET": webhook_secret,
                    "APS_API_WEBHOOK_DATABASE_URL": self.results_url} if webhook_secret else {}
        self.api = ManagedProcess(
            "aps-api",
            [sys.executable, "-m", "aps_api", "--host", "127.0.0.1", "--port", str(port)],
            self.workdir / "logs" / "aps-api.log",
            env={**os.environ, **self.api_env(), **webhooks},
        )
        self.api_url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{self.api_url}/health", timeout=60, process=self.api)
        return self.api_url

    def put_sample_batch(self, seed: int = 1) -> list[Any]:
        from aps_landing.s3 import S3Landing
        from aps_samples.batch import put_sample_batch

        return put_sample_batch(S3Landing(self.s3.client(), LANDING_BUCKET), LANDING_PREFIX, seed=seed)

    def stop(self) -> None:
        if self.api is not None:
            self.api.stop()
        if self.airflow is not None:
            self.airflow.stop()
        if self.redis is not None:
            self.redis.stop()
        self.emulator.stop()
        self.s3.stop()
        if self.results_postgres is not None:
            self.results_postgres.stop()
        self.postgres.stop()
