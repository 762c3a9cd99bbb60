"""
### CAD/BIM ingest: S3 landing bucket → validation → APS translation → PostgreSQL results

One DAG per entry of the pipelines file (`include/aps_pipeline/pipelines.yaml`, or `$APS_PIPELINES_FILE`).
Every run:

1. **prepare_run**, one step after the other (each in its own section of the task's log, with its outcome):
   - **check_results_schema**: the results database is at the schema version this code expects;
   - **discover_files**: claims new or changed objects under the landing prefix (params `prefix`, `limit`);
   - **validate_files**: extension, size, magic bytes, safe key, metadata, batch expectations;
   - **quarantine_rejected**: copies each rejected object beside a JSON reason; originals are never touched;
   - **plan_models**: one model per distinct content (identical files are uploaded and translated once), in
     batches of `models_per_task`; a backlog bigger than one run can map is left, in order, for the next run;
   - **ensure_aps_bucket**.
2. Per batch (**models** group, mapped, labelled with its files): **upload_and_submit** uploads the validated
   versions to APS and submits and records every job → **wait_for_translations** waits for all of them on
   the triggerer (deferrable; the triggerer ends it with every translation's status) → **load_models**
   (whatever happened upstream) loads each model's views, object tree, properties and thumbnail, or records
   why not: a batch whose upload or wait failed for good is still settled, model by model.
3. **finish_run**: counts per terminal state (loaded, rejected, failed), whatever happened upstream (fails if
   any file has none: write_run_summary); then emits the results asset for downstream DAGs, only when no
   step of the run failed; a run whose schema check, discovery, validation, quarantine, planning or batch
   failed ends failed.

Every file of a run, with its reason, views, counts and thumbnail, is on the run's **APS files** tab. The
pipeline's `notify:` recipients hear about failed runs and runs that end with failed or rejected files.

Manual runs take `prefix`, `limit` and `force` (re-translate content that was translated before).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Asset, Param, task_group

from aps_ingest_tasks import tasks
from aps_ingest_tasks.notifications import notify_run_failed
from aps_ingest_tasks.schedules import ingest_schedule
from aps_pipeline.config import PipelineConfig, load_pipelines
from aps_provider.sensors.derivative import APSTranslationsSensor


def ingest_dag(pipeline: PipelineConfig) -> DAG:
    with DAG(
        dag_id=pipeline.name,
        description=pipeline.description or None,
        doc_md=__doc__,
        schedule=ingest_schedule(pipeline),
        start_date=datetime.combine(pipeline.start_date, datetime.min.time()),
        catchup=False,
        max_active_runs=pipeline.max_active_runs,
        tags=pipeline.tags,
        render_template_as_native_obj=True,
        user_defined_macros={"batch_label": tasks.batch_label},
        on_failure_callback=notify_run_failed,
        default_args={
            "owner": pipeline.owner,
            "retries": pipeline.retries,
            "retry_delay": timedelta(seconds=pipeline.retry_delay_seconds),
            "retry_exponential_backoff": True,
            "max_retry_delay": timedelta(minutes=30),
        },
        params={
            "prefix": Param(None, type=["null", "string"], description="only keys under this prefix"),
            "limit": Param(None, type=["null", "integer"], minimum=1, description="at most this many files"),
            "force": Param(False, type="boolean", description="re-translate content translated before"),
        },
    ) as dag:
        # Every task of a batch, the wait included (poke mode calls APS from a worker slot), takes a slot of
        # the pipeline's pool: the pool bounds concurrent APS work. A deferred wait holds no slot.
        # The group's arguments are the keys of aps_pipeline.batch.ModelBatch (prepare_run returns them);
        # each mapped instance is labelled with its files' names.
        @task_group(group_id="models", default_args={
            "pool": pipeline.pool.name, "map_index_template": "{{ batch_label(ti) }}",
        })
        def process_batch(label, models):
            # A failed translation is an answer load_models records (fail_on_unsuccessful=False): a deferred
            # wait is ended by the triggerer, which pushes the verdicts as the wait's XCom, and no task
            # process resumes it. load_models runs whatever happened upstream (None: the wait gave none).
            wait = APSTranslationsSensor(
                task_id="wait_for_translations", urns=tasks.upload_and_submit(models),
                region=pipeline.aps.region, aps_conn_id=pipeline.aps_conn_id,
                wait_policy=pipeline.wait_policy.as_primitives(), fail_on_unsuccessful=False,
            )
            tasks.load_models(models, wait.output)

        batches = tasks.prepare_run()
        models = process_batch.expand_kwargs(batches)
        finished = tasks.finish_run.override(outlets=[Asset(name=f"{pipeline.name}_results")])()
        [batches, models] >> finished

    return dag


for pipeline in load_pipelines():
    globals()[pipeline.name] = ingest_dag(pipeline)
