"""DAG integrity: dags/ parses without errors and every pipeline entry becomes a DAG with the agreed shape.

The DagBag is filled in a subprocess with AIRFLOW_HOME in a temporary directory (Airflow writes its config and
logs there on import, never to ~/airflow), which reports what it parsed as JSON for the tests to judge.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aps_pipeline.batch import ModelBatch
from aps_pipeline.config import DEFAULT_PIPELINES_FILE, PIPELINES_FILE_ENV, PipelineConfig, load_pipelines
from aps_provider.triggers.derivative import WaitedURN, task_succeeds

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
PREPARE_TASK = "prepare_run"
UPLOAD_TASK = "models.upload_and_submit"
WAIT_TASK = "models.wait_for_translations"  # the provider's deferrable wait, ended by the triggerer
LOAD_TASK = "models.load_models"  # settles every model of the batch, whatever happened upstream
FINISH_TASK = "finish_run"

# Runs in the subprocess: fill a DagBag from argv[1], write what the tests need to know to argv[2].
_DESCRIBE_DAGBAG = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.definitions._internal.expandinput import MappedArgument
from airflow.sdk.definitions.taskgroup import MappedTaskGroup

bag = DagBag(dag_folder=sys.argv[1])

def mapped_keys(value):  # the keys of the mapped group's input that a task argument refers to
    if isinstance(value, MappedArgument):
        return {value._key}
    if isinstance(value, dict):
        return set().union(*(mapped_keys(v) for v in value.values()))
    if isinstance(value, (list, tuple)):
        return set().union(*(mapped_keys(v) for v in value))
    return set()

def describe_task(task):
    group = task.task_group
    return {
        "operator": type(task).__name__,
        "operator_bases": [cls.__name__ for cls in type(task).__mro__],
        "retries": task.retries,
        "exponential_backoff": bool(task.retry_exponential_backoff),
        "retry_delay_seconds": task.retry_delay.total_seconds(),
        "pool": task.pool,
        "trigger_rule": str(task.trigger_rule.value),
        "outlets": [getattr(outlet, "name", str(outlet)) for outlet in task.outlets],
        "deferrable": getattr(task, "deferrable", None),
        "end_from_trigger": getattr(task, "end_from_trigger", None),
        "fail_on_unsuccessful": getattr(task, "fail_on_unsuccessful", None),
        "group": group.group_id if group is not None else None,
        "mapped_group": isinstance(group, MappedTaskGroup),
        "upstream": sorted(task.upstream_task_ids),
        "mapped_arguments": sorted(
            set().union(*(mapped_keys(getattr(task, f, None)) for f in task.template_fields))
        ),
    }

report = {"import_errors": {str(k): v for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in bag.dags.items():
    report["dags"][dag_id] = {
        "fileloc": dag.fileloc,
        "description": dag.description,
        "schedule": dag.schedule if isinstance(dag.schedule, (str, type(None))) else str(dag.schedule),
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "tags": sorted(dag.tags),
        "doc_md": dag.doc_md or "",
        "owner": dag.owner,
        "params": dag.params.dump(),
        "param_schemas": {name: dag.params.get_param(name).schema for name in dag.params},
        "tasks": {task.task_id: describe_task(task) for task in dag.tasks},
    }
with open(sys.argv[2], "w") as out:
    json.dump(report, out)
"""


def describe_dagbag(tmp_path: Path, env: dict[str, str]) -> dict[str, Any]:
    """Parse dags/ in a fresh interpreter with AIRFLOW_HOME under `tmp_path` and the given extra `env`."""
    home = tmp_path / "airflow-home"
    home.mkdir(parents=True, exist_ok=True)
    report_file = tmp_path / "dagbag.json"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and k != PIPELINES_FILE_ENV}
    clean.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", **env})
    result = subprocess.run(
        [sys.executable, "-c", _DESCRIBE_DAGBAG, str(DAGS_FOLDER), str(report_file)],
        env=clean, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(report_file.read_text())
    # "dags": the ingest DAGs (one per pipeline entry); "other_dags": the rest of dags/ (maintenance).
    everything = report.pop("dags")
    report["dags"] = {k: v for k, v in everything.items() if Path(v["fileloc"]).name == "aps_ingest.py"}
    report["other_dags"] = {k: v for k, v in everything.items() if k not in report["dags"]}
    return report


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The DagBag of dags/ with the shipped pipelines file and deferrable operators on by default."""
    return describe_dagbag(
        tmp_path_factory.mktemp("dagbag"), {"AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True"}
    )


def model_tasks(dag: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {task_id: task for task_id, task in dag["tasks"].items() if task["group"] == "models"}


# -- the shipped pipelines file ----------------------------------------------------------------------------


def test_dags_folder_imports_without_errors(shipped: dict[str, Any]) -> None:
    assert shipped["import_errors"] == {}
    assert shipped["dags"], "no DAG was parsed from dags/"


def test_every_pipeline_entry_is_a_dag(shipped: dict[str, Any]) -> None:
    names = {pipeline.name for pipeline in load_pipelines(DEFAULT_PIPELINES_FILE, env={})}
    assert names == set(shipped["dags"])
    assert "aps_ingest" in names
    for dag in shipped["dags"].values():
        assert Path(dag["fileloc"]).name == "aps_ingest.py"


def test_dag_runs_overlap_as_configured_without_catchup_and_is_documented(shipped: dict[str, Any]) -> None:
    for dag_id, dag in shipped["dags"].items():
        # Runs overlap (an event's run need not wait for the one before); the registry keeps them apart.
        assert dag["max_active_runs"] == PipelineConfig.model_fields["max_active_runs"].default, dag_id
        assert dag["catchup"] is False, dag_id
        assert dag["tags"], dag_id
        # The docs an operator sees in the UI name the steps of the run.
        for step in ("prepare_run", "discover_files", "validate_files", "quarantine_rejected", "plan_models",
                     "upload_and_submit", "wait_for_translations", "load_models", "finish_run"):
            assert step in dag["doc_md"], (dag_id, step)
    ingest = shipped["dags"]["aps_ingest"]
    assert ingest["tags"] == ["aps", "ingest"]
    assert ingest["schedule"] == "@hourly"
    assert ingest["owner"] == "data-engineering"


def test_manual_runs_take_prefix_limit_and_force(shipped: dict[str, Any]) -> None:
    dag = shipped["dags"]["aps_ingest"]
    assert dag["params"] == {"prefix": None, "limit": None, "force": False}
    schemas = dag["param_schemas"]
    assert schemas["force"]["type"] == "boolean"
    assert "integer" in schemas["limit"]["type"]
    assert schemas["limit"]["minimum"] == 1
    assert "string" in schemas["prefix"]["type"]


def test_every_task_retries_with_exponential_backoff(shipped: dict[str, Any]) -> None:
    # The wait included: a retry looks at the manifests again (a finished translation costs no deferral).
    # load_models retries too, and skips the models already settled.
    for task_id, task in shipped["dags"]["aps_ingest"]["tasks"].items():
        assert task["exponential_backoff"], task_id
        assert task["retries"] >= 1, task_id
        assert task["retry_delay_seconds"] > 0, task_id


def test_the_batch_group_is_mapped_and_bounded_by_the_pipeline_pool(shipped: dict[str, Any]) -> None:
    (pipeline,) = load_pipelines(DEFAULT_PIPELINES_FILE, env={})
    tasks = model_tasks(shipped["dags"]["aps_ingest"])
    assert set(tasks) == {UPLOAD_TASK, WAIT_TASK, LOAD_TASK}
    for task_id, task in tasks.items():
        assert task["mapped_group"], task_id
        assert task["pool"] == pipeline.pool.name, task_id
    all_tasks = shipped["dags"]["aps_ingest"]["tasks"]
    # The intake and the run's end never wait for a slot of the APS pool.
    outside_pools = {task["pool"] for task_id, task in all_tasks.items() if task_id not in tasks}
    assert pipeline.pool.name not in outside_pools


def test_the_batch_group_takes_the_batch_as_prepare_run_returns_it(shipped: dict[str, Any]) -> None:
    tasks = model_tasks(shipped["dags"]["aps_ingest"])
    used = set().union(*(task["mapped_arguments"] for task in tasks.values()))
    # Every argument the group's tasks take is a ModelBatch key (no renaming between the step and the DAG).
    assert used <= ModelBatch.__required_keys__
    assert "models" in tasks[UPLOAD_TASK]["mapped_arguments"]
    assert "models" in tasks[LOAD_TASK]["mapped_arguments"]  # the load settles every model, uploaded or not
    # The batch is uploaded and submitted before any wait: upload_and_submit -> wait -> load.
    assert tasks[UPLOAD_TASK]["upstream"] == [PREPARE_TASK]
    assert tasks[WAIT_TASK]["upstream"] == [UPLOAD_TASK]
    assert set(tasks[LOAD_TASK]["upstream"]) == {WAIT_TASK, PREPARE_TASK}  # its models come from the plan


def test_a_batch_whose_upload_or_wait_fails_for_good_is_still_settled(shipped: dict[str, Any]) -> None:
    # A batch task that fails for good makes the tasks after it upstream_failed; load_models runs anyway
    # (all_done), with no verdicts, and settles every model of the batch: no file waits for a later run.
    # The settlement itself is tested on real services (tests/integration/test_pipeline_merged_steps.py).
    tasks = model_tasks(shipped["dags"]["aps_ingest"])
    assert tasks[LOAD_TASK]["trigger_rule"] == "all_done"
    assert [tasks[t]["trigger_rule"] for t in (UPLOAD_TASK, WAIT_TASK)] == ["all_success"] * 2


def test_the_wait_defers_when_operators_default_deferrable_is_on(shipped: dict[str, Any]) -> None:
    wait = shipped["dags"]["aps_ingest"]["tasks"][WAIT_TASK]
    assert wait["operator"] == "APSTranslationsSensor"  # the provider's wait itself
    assert wait["deferrable"] is True
    # A failed translation is an answer the load records, so the triggerer ends every wait it finishes.
    assert (wait["end_from_trigger"], wait["fail_on_unsuccessful"]) == (True, False)


def test_the_run_ends_with_one_task_that_summarises_and_publishes(shipped: dict[str, Any]) -> None:
    tasks = shipped["dags"]["aps_ingest"]["tasks"]
    finish = tasks[FINISH_TASK]
    # The summary runs whatever happened upstream; the task fails the run (and publishes nothing) when a
    # step failed, so it must be the run's only leaf: the run's state is its state.
    assert finish["trigger_rule"] == "all_done"
    assert finish["outlets"] == ["aps_ingest_results"]
    assert {PREPARE_TASK, LOAD_TASK} <= set(finish["upstream"])
    leaves = [task_id for task_id in tasks if not any(task_id in t["upstream"] for t in tasks.values())]
    assert leaves == [FINISH_TASK]


def test_a_one_file_run_starts_at_most_five_task_processes(shipped: dict[str, Any]) -> None:
    """One file is one model, one batch: each task outside the group runs once, each task of the mapped
    group once for the batch, and a deferrable task once more when its trigger fires (a new task process
    on a worker), unless the triggerer ends it: a wait that ends from the trigger and never fails on an
    unsuccessful translation. Retries aside, that is every task process the run starts."""
    tasks = shipped["dags"]["aps_ingest"]["tasks"]
    batches = 1

    def resumed(task: dict[str, Any]) -> bool:  # by the provider's rule, with a translation that failed
        failed = {"urn:a": WaitedURN.unreadable("the translation failed")}
        ends_in_triggerer = task["end_from_trigger"] and task_succeeds(failed, task["fail_on_unsuccessful"])
        return bool(task["deferrable"]) and not ends_in_triggerer

    instances = sum(batches if task["mapped_group"] else 1 for task in tasks.values())
    resumes = sum(batches if task["mapped_group"] else 1 for task in tasks.values() if resumed(task))
    assert (instances, resumes) == (5, 0)
    assert instances + resumes <= 5


# -- adding a pipeline is configuration ----------------------------------------------------------------------

TWO_PIPELINES = """
defaults:
  retries: 2
  retry_delay_seconds: 30
pipelines:
  - name: aps_ingest
    tags: [aps, ingest]
    landing: {bucket: landing, prefix: incoming/}
    aps: {bucket_key: aps-ingest-landing}
  - name: aps_ingest_drawings
    description: Drawings from the design team's bucket.
    schedule: "@daily"
    tags: [aps, drawings]
    owner: design-data
    landing: {bucket: drawings, prefix: dwg/, quarantine_prefix: rejected/}
    aps: {bucket_key: aps-drawings, region: EMEA}
    pool: {name: aps_drawings, slots: 2}
    max_active_runs: 1
    retries: 4
    retry_delay_seconds: 5
"""


def test_a_second_pipeline_entry_is_a_second_dag_with_its_own_settings(tmp_path: Path) -> None:
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text(TWO_PIPELINES)
    # Deferrable off by default this time: the sensor follows the setting rather than hard-coding it.
    report = describe_dagbag(
        tmp_path, {PIPELINES_FILE_ENV: str(pipelines), "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "False"}
    )
    assert report["import_errors"] == {}
    assert set(report["dags"]) == {"aps_ingest", "aps_ingest_drawings"}

    ingest, drawings = report["dags"]["aps_ingest"], report["dags"]["aps_ingest_drawings"]
    assert drawings["tags"] == ["aps", "drawings"]
    assert ingest["tags"] == ["aps", "ingest"]
    assert drawings["schedule"] == "@daily"
    assert ingest["schedule"] == "@hourly"
    assert drawings["owner"] == "design-data"
    assert drawings["description"] == "Drawings from the design team's bucket."
    assert drawings["max_active_runs"] == 1
    assert ingest["max_active_runs"] == PipelineConfig.model_fields["max_active_runs"].default
    assert drawings["catchup"] is False

    assert {t["pool"] for t in model_tasks(drawings).values()} == {"aps_drawings"}
    assert {t["pool"] for t in model_tasks(ingest).values()} == {"aps_translation"}
    assert drawings["tasks"][FINISH_TASK]["outlets"] == ["aps_ingest_drawings_results"]
    assert ingest["tasks"][FINISH_TASK]["outlets"] == ["aps_ingest_results"]
    assert drawings["tasks"][PREPARE_TASK]["retries"] == 4
    assert drawings["tasks"][PREPARE_TASK]["retry_delay_seconds"] == 5
    assert ingest["tasks"][PREPARE_TASK]["retries"] == 2
    assert ingest["tasks"][PREPARE_TASK]["retry_delay_seconds"] == 30
    for dag in (ingest, drawings):
        assert dag["tasks"][WAIT_TASK]["deferrable"] is False


def test_a_local_folder_landing_is_a_dag_too(tmp_path: Path) -> None:
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text(
        "pipelines:\n  - name: from_folder\n    landing: {path: /data/landing}\n"
        "    aps: {bucket_key: aps-folder}\n"
    )
    report = describe_dagbag(tmp_path, {PIPELINES_FILE_ENV: str(pipelines)})
    assert report["import_errors"] == {}
    assert set(model_tasks(report["dags"]["from_folder"])) == {UPLOAD_TASK, WAIT_TASK, LOAD_TASK}


def test_an_events_queue_makes_the_schedule_the_cron_or_the_queues_asset(tmp_path: Path) -> None:
    queue = "http://127.0.0.1:5000/123456789012/aps-landing-events"  # a local SQS server's http URL
    env = {"APS_EVENTS_QUEUE_URL": queue, "APS_EVENTS_AWS_CONN_ID": "aws_events"}
    report = describe_dagbag(tmp_path, env)
    assert report["import_errors"] == {}
    schedule = report["dags"]["aps_ingest"]["schedule"]
    assert schedule.startswith("AssetOrTimeSchedule(")
    assert "expression='0 * * * *'" in schedule  # the hourly net stays
    assert "SqsSensorTrigger" in schedule  # the scheme form reaches the Amazon provider's trigger
    assert f"sqs_queue={queue}" in schedule
    assert "aws_conn_id=aws_events" in schedule


# -- the maintenance DAG -----------------------------------------------------------------------------------

MAINTENANCE_PIPELINES = """
maintenance:
  schedule: "@weekly"
  airflow_db_days: 30
  backup: {folder: /var/backups/aps, keep: 3}
pipelines:
  - name: aps_ingest
    landing: {bucket: landing, prefix: incoming/}
    aps: {bucket_key: aps-ingest}
    retention: {quarantine_days: 30, history_days: 90}
  - name: aps_drawings
    landing: {path: /data/drawings}
    aps: {bucket_key: aps-drawings}
"""


def test_the_maintenance_dag_purges_each_pipeline_backs_up_cleans_reports(shipped: dict[str, Any]) -> None:
    dag = shipped["other_dags"]["aps_maintenance"]
    assert dag["schedule"] == "@daily"
    assert dag["catchup"] is False
    assert dag["max_active_runs"] == 1
    assert "Maintenance" in dag["doc_md"]
    tasks = dag["tasks"]
    assert set(tasks) == {"purge_quarantine__aps_ingest", "purge_history__aps_ingest",
                          "delete_derivatives__aps_ingest", "back_up_results", "forget_webhook_deliveries",
                          "clean_airflow_db", "report"}
    # Versions purge_history purges count as not live: it runs first.
    assert tasks["delete_derivatives__aps_ingest"]["upstream"] == ["purge_history__aps_ingest"]
    assert tasks["report"]["trigger_rule"] == "all_done"  # reports (and fails the run) whatever failed
    assert set(tasks["report"]["upstream"]) == set(tasks) - {"report"}


def test_the_maintenance_dag_follows_the_maintenance_section(tmp_path: Path) -> None:
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text(MAINTENANCE_PIPELINES)
    report = describe_dagbag(tmp_path, {PIPELINES_FILE_ENV: str(pipelines)})
    assert report["import_errors"] == {}
    assert set(report["dags"]) == {"aps_ingest", "aps_drawings"}
    dag = report["other_dags"]["aps_maintenance"]
    assert dag["schedule"] == "@weekly"
    assert {task for task in dag["tasks"] if task.startswith("purge_")} == {
        f"purge_{what}__{name}" for what in ("quarantine", "history")
        for name in ("aps_ingest", "aps_drawings")
    }


# -- the reprocess DAG -------------------------------------------------------------------------------------


def test_the_reprocess_dag_records_the_request_then_takes_the_ingest_steps(shipped: dict[str, Any]) -> None:
    dag = shipped["other_dags"]["aps_reprocess"]
    assert dag["schedule"] is None  # started from the trigger form only
    assert dag["max_active_runs"] == 1
    assert "reload" in dag["doc_md"]
    assert "dry_run" in dag["doc_md"]
    tasks = dag["tasks"]
    assert set(tasks) == {"start_reprocess", "validate", "plan", "models.upload_and_submit",
                          "models.wait_for_translations", "models.load", "finish"}
    assert tasks["validate"]["upstream"] == ["start_reprocess"]
    assert tasks["plan"]["upstream"] == ["validate"]
    assert all(tasks[t]["mapped_group"] for t in tasks if t.startswith("models."))
    assert tasks["models.upload_and_submit"]["mapped_arguments"] == ["models"]
    assert tasks["models.wait_for_translations"]["deferrable"] is True
    assert tasks["models.load"]["trigger_rule"] == "all_done"
    assert tasks["finish"]["trigger_rule"] == "all_done"
    assert "models.load" in tasks["finish"]["upstream"]


def test_the_reprocess_trigger_form_offers_choices_and_defaults_to_a_dry_run(shipped: dict[str, Any]) -> None:
    dag = shipped["other_dags"]["aps_reprocess"]
    schemas, defaults = dag["param_schemas"], dag["params"]
    assert schemas["pipeline"]["enum"] == ["aps_ingest"]
    assert schemas["action"]["enum"] == ["reload", "retranslate", "revalidate"]
    assert schemas["states"]["items"]["enum"] == ["failed", "loaded", "rejected"]
    assert schemas["landed_after"]["format"] == schemas["landed_before"]["format"] == "date-time"
    assert schemas["keys"]["type"] == "array"
    assert schemas["reason"]["minLength"] == 1
    assert defaults["dry_run"] is True
