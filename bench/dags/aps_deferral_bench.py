"""Benchmark DAGs for bench/deferral.py: wait on N translations with one mapped sensor task.

The jobs are POSTed by the benchmark before the run; the run's conf carries their URNs and the sensor
settings. `aps_deferral_deferrable` waits on the triggerer, `aps_deferral_poke` holds a worker slot per
waiting sensor (the baseline).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, get_current_context, task

from aps_provider.sensors.derivative import APSTranslationSensor


@task
def urns_from_conf() -> list[str]:
    return list(get_current_context()["dag_run"].conf["urns"])


def build(dag_id: str, deferrable: bool) -> DAG:
    with DAG(dag_id, schedule=None, start_date=datetime(2024, 1, 1), catchup=False, max_active_runs=1,
             max_active_tasks=10_000, tags=["aps", "bench"]) as dag:
        APSTranslationSensor.partial(
            task_id="wait_for_translation",
            deferrable=deferrable,
            poll_interval=10,
            max_poll_interval=60,
            poke_interval=10,
            timeout=timedelta(hours=2),
        ).expand(urn=urns_from_conf())
    return dag


deferrable_dag = build("aps_deferral_deferrable", deferrable=True)
poke_dag = build("aps_deferral_poke", deferrable=False)
