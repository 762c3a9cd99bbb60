"""The task modules a worker preloads before forking task processes (aps_ingest_tasks.preload): all of them
import, no thread is left running (it would not survive the fork), and what a task process then parses and
imports (the DAG file, every task's steps) brings in none of the heavy packages again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from aps_pipeline.config import PIPELINES_FILE_ENV

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("boto3", "botocore", "sqlalchemy", "alembic", "psycopg", "pandas", "great_expectations", "httpx")

# Runs in a fresh interpreter: preload, then do what a task process does (parse the DAG file, import the
# steps its tasks import lazily) and report which top-level packages that still had to import.
_TASK_PROCESS = r"""
import json, os, sys, threading
from aps_ingest_tasks.preload import preload
failed = preload()
threads = threading.active_count()
before = set(sys.modules)
from airflow.dag_processing.dagbag import BundleDagBag
dags = os.path.join(sys.argv[1], "dags")
bag = BundleDagBag(dag_folder=os.path.join(dags, "aps_ingest.py"), safe_mode=False, load_op_links=False,
                   bundle_path=dags, bundle_name="dags-folder")
import aps_pipeline.intake, aps_pipeline.batch_steps, aps_pipeline.summary, aps_results.migrate
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
import aps_pipeline.expectations, great_expectations
new = sorted({name.split(".")[0] for name in set(sys.modules) - before})
from aps_client.transport import shared_ssl_context
import aps_pipeline.config as pipelines_config
warm = {"tls_contexts": shared_ssl_context.cache_info().currsize,
        "parsed_files": len(pipelines_config._PARSED)}
print(json.dumps({"failed": failed, "threads": threads, "dags": sorted(bag.dags),
                  "errors": list(bag.import_errors), "new": new, "warm": warm}))
"""


def test_a_task_process_forked_after_the_preload_imports_no_heavy_package_again(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and k != PIPELINES_FILE_ENV}
    env.update({"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    result = subprocess.run([sys.executable, "-c", _TASK_PROCESS, str(ROOT)], env=env, capture_output=True,
                            text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["failed"] == []
    assert report["threads"] == 1  # imports only: nothing running that a fork would cut in half
    assert report["dags"] == ["aps_ingest"], report["errors"]
    assert not set(report["new"]) & set(HEAVY), report["new"]
    # Built once before the fork, not per task process: the TLS context, the parsed pipelines file.
    assert report["warm"] == {"tls_contexts": 1, "parsed_files": 1}


def test_the_executor_and_the_celery_workers_preload() -> None:
    from airflow.executors.local_executor import LocalExecutor
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
    from celery.signals import worker_init

    from aps_ingest_tasks.celery_config import CELERY_CONFIG, _preload_task_modules
    from aps_ingest_tasks.executor import PreloadingLocalExecutor

    assert issubclass(PreloadingLocalExecutor, LocalExecutor)
    assert PreloadingLocalExecutor.is_local
    assert CELERY_CONFIG == DEFAULT_CELERY_CONFIG  # Airflow's own settings, nothing changed
    assert _preload_task_modules in [receiver() for _, receiver in worker_init.receivers]
