"""
### Maintenance: retention, backups and Airflow's own clean-up, once a day

The `maintenance:` section of the pipelines file configures this DAG; each pipeline's `retention:` says what
of it is removed. Every run:

1. per pipeline, **purge_quarantine__<pipeline>**: quarantine copies and reason files older than
   `retention.quarantine_days` (landed files are never touched);
2. per pipeline, **purge_history__<pipeline>**: run summaries and validation rows older than
   `retention.history_days` (files, models and their results stay), and the results of each document's
   versions older than the newest `retention.keep_versions` (the versions stay, marked `purged`);
3. per pipeline, **delete_derivatives__<pipeline>**: with `retention.delete_derivatives: true`, the APS
   manifest and OSS object of each model no live document version needs (all its versions deleted or
   purged, no file in flight); the same content landing again is uploaded and translated again;
4. **back_up_results**: `aps-db backup` of the results database into `maintenance.backup.folder`, keeping
   the newest `keep` (skipped when no folder is set);
5. **forget_webhook_deliveries**: the delivery ids of APS callbacks older than a week (APS sends a delivery
   again for up to 48 h; the ids deduplicate them only until then);
6. **clean_airflow_db**: `airflow db clean` for Airflow's records older than `maintenance.airflow_db_days`;
7. **report**: one log line per task with what it removed; fails the run when a task failed.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from aps_ingest_tasks import maintenance
from aps_pipeline.config import load_maintenance, load_pipelines

config = load_maintenance()

with DAG(
    dag_id=config.dag_id,
    description="Retention, backups of the results database and Airflow's own clean-up.",
    doc_md=__doc__,
    schedule=config.schedule,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["aps", "maintenance"],
    default_args={"owner": "data-engineering", "retries": 1},
):
    results = []
    for pipeline in load_pipelines():
        results.append(maintenance.purge_quarantine.override(task_id=f"purge_quarantine__{pipeline.name}")(
            pipeline.name))
        history = maintenance.purge_history.override(task_id=f"purge_history__{pipeline.name}")(pipeline.name)
        # After purge_history: the versions it purges count as not live.
        derivatives = maintenance.delete_derivatives.override(
            task_id=f"delete_derivatives__{pipeline.name}")(pipeline.name)
        history >> derivatives
        results += [history, derivatives]
    results += [maintenance.back_up_results(), maintenance.forget_webhook_deliveries(),
                maintenance.clean_airflow_db()]
    maintenance.report(results)
