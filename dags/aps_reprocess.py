"""
### Reprocess files: reload, retranslate or revalidate, from the trigger form

Trigger with **▶** and fill the form: the pipeline, which files (project, document keys, states, landed
after/before), the action, and why. Every file's action is recorded with who asked, when and why
(`reprocess_actions`), once per run. Start with **dry_run** on: the `start_reprocess` log lists what the
run would touch, and its return value holds the list.

- **reload**: fetch the results from APS again (no new job, nothing uploaded).
- **retranslate**: a new job with `x-ads-force`, optionally with other output formats (another model);
  the source is uploaded again only if its OSS object expired.
- **revalidate**: rejected files against today's rules; the valid ones go on to translation.

The run then takes the ingest's own steps on those files: validate and quarantine (revalidate) → plan
(the budget guard included) → per batch, upload_and_submit → wait (deferrable) → load → **finish** (each
action's outcome and the run's summary).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task_group

from aps_ingest_tasks import reprocess
from aps_pipeline.config import load_pipelines
from aps_pipeline.reprocess import ACTIONS, IFC_CONVERSION_METHODS
from aps_provider.sensors.derivative import APSTranslationsSensor
from aps_results.models import TERMINAL_FILE_STATES

PIPELINES = [pipeline.name for pipeline in load_pipelines()]
STARTED = f"ti.xcom_pull(task_ids='{reprocess.START_TASK_ID}')"

with DAG(
    dag_id="aps_reprocess",
    description="Reload, retranslate or revalidate selected files (who, when and why recorded per file).",
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["aps", "reprocess"],
    render_template_as_native_obj=True,
    default_args={"owner": "data-engineering", "retries": 1, "retry_delay": timedelta(seconds=30)},
    params={
        "pipeline": Param(PIPELINES[0], type="string", enum=PIPELINES, description="the ingest pipeline"),
        "action": Param("reload", type="string", enum=list(ACTIONS),
                        description="reload: results again, no job; retranslate: a forced new job; "
                                    "revalidate: rejected files against today's rules"),
        "reason": Param("", type="string", minLength=1, description="why (recorded with every file)"),
        "dry_run": Param(True, type="boolean", description="only list what the run would touch"),
        "project": Param(None, type=["null", "string"], description="only files of this metadata project"),
        "keys": Param([], type="array", items={"type": "string"},
                      description="only these document keys (S3 keys), one per line"),
        "states": Param([], type="array",
                        items={"type": "string", "enum": sorted(s.value for s in TERMINAL_FILE_STATES)},
                        description="only files in these states (default: the ones the action applies to)"),
        "landed_after": Param(None, type=["null", "string"], format="date-time",
                              description="only files that landed at or after this time"),
        "landed_before": Param(None, type=["null", "string"], format="date-time",
                               description="only files that landed before this time"),
        "output_formats": Param([], type="array",
                                items={"type": "string", "enum": ["svf2", "svf", "thumbnail", "obj"]},
                                description="retranslate only: other output formats (another model)"),
        "ifc_conversion_method": Param(None, type=["null", "string"], enum=[None, *IFC_CONVERSION_METHODS],
                                       description="retranslate only: APS's IFC conversionMethod for "
                                                   "svf/svf2 (another model)"),
    },
):
    @task_group(group_id="models")
    def process_batch(label, models):
        submitted = reprocess.upload_and_submit(models)
        wait = APSTranslationsSensor(
            task_id="wait_for_translations", urns=submitted,
            region="{{ " + STARTED + "['region'] }}", aps_conn_id="{{ " + STARTED + "['aps_conn_id'] }}",
            fail_on_unsuccessful=False, retries=1, retry_delay=timedelta(seconds=5),
            retry_exponential_backoff=False,
        )
        reprocess.load(models, wait.output)

    started = reprocess.start()
    validated = reprocess.validate()
    planned = reprocess.plan()
    batches = process_batch.expand_kwargs(planned)
    finished = reprocess.finish()
    started >> validated >> planned >> batches >> finished
