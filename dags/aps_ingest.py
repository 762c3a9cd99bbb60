"""
### CAD/BIM ingest: S3 landing bucket → validation → APS translation → PostgreSQL results

One DAG per entry of the pipelines file (`include/aps_pipeline/pipelines.yaml`, or `$APS_PIPELINES_FILE`).
Every run:

1. **check_results_schema**: the results database is at the schema version this code expects.
2. **discover_files**: claims new or changed objects under the landing prefix (params `prefix`, `limit`).
3. **validate_files**: extension, size, magic bytes, safe key, metadata, batch expectations.
4. **quarantine_rejected**: copies each rejected object beside a JSON reason; originals are never touched.
5. **plan_models**: one model per distinct content (identical files are uploaded and translated once), in
   batches of `models_per_task`; a backlog bigger than one run can map is left, in order, for the next run.
6. **ensure_aps_bucket**, then per batch (**models** group, mapped, labelled with its files): upload the
   validated versions to APS → submit and record every job → wait for all of them on the triggerer
   (deferrable) → load each model's views, object tree, properties and thumbnail, or record why not.
7. **write_run_summary**: counts per terminal state (loaded, rejected, failed), whatever happened upstream;
   fails if any file has none.
8. **publish_results**: emits the results asset for downstream DAGs, only when no step of the run failed;
   a run whose schema check, discovery, validation, quarantine or planning failed ends failed.

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
from aps_provider.operators.oss import APSCreateBucketOperator
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
        # Every task of a batch, the sensor included (poke mode calls APS from a worker slot), takes a slot
        # of the pipeline's pool: the pool bounds concurrent APS work. A deferred sensor holds no slot.
        # The group's arguments are the keys of aps_pipeline.batch.ModelBatch (plan_models returns them);
        # each mapped instance is labelled with its files' names.
        @task_group(group_id="models", default_args={
            "pool": pipeline.pool.name, "map_index_template": "{{ batch_label(ti) }}",
        })
        def process_batch(label, models):
            submitted = tasks.submit_translations(tasks.upload_models(models))
            wait = APSTranslationsSensor(
                task_id="wait_for_translations", urns=submitted, region=pipeline.aps.region,
                aps_conn_id=pipeline.aps_conn_id, wait_policy=pipeline.wait_policy.as_primitives(),
                # One quick retry, only for Airflow's resume race (see FIRST_POLL_FLOOR): it looks again and
                # finds the finished translations. Their outcomes are the load's to record, not a retry's.
                fail_on_unsuccessful=False, retries=1, retry_delay=timedelta(seconds=5),
                retry_exponential_backoff=False,
            )
            # The wait's verdicts drive the load (None when the wait failed: the load then asks APS).
            tasks.load_models(models, wait.output)

        schema, discovered, validated = (
            tasks.check_results_schema(), tasks.discover_files(), tasks.validate_files()
        )
        planned = tasks.plan_models()
        bucket = APSCreateBucketOperator(
            task_id="ensure_aps_bucket", bucket_key=pipeline.aps.bucket_key, policy=pipeline.aps.policy,
            region=pipeline.aps.region, aps_conn_id=pipeline.aps_conn_id,
        )
        models = process_batch.expand_kwargs(planned)
        summary = tasks.write_run_summary()
        published = tasks.publish_results.override(outlets=[Asset(name=f"{pipeline.name}_results")])(summary)

        quarantined = tasks.quarantine_rejected()
        schema >> discovered >> validated >> [quarantined, planned]
        planned >> bucket >> models >> summary
        [validated, quarantined] >> summary
        [schema, discovered, validated, quarantined, planned, bucket, models] >> published

    return dag


for pipeline in load_pipelines():
    globals()[pipeline.name] = ingest_dag(pipeline)
