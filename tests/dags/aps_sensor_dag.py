"""Test DAGs for the APS provider: upload from S3 -> start translation -> wait (deferrable or poke).

Each run takes its source and target from the run's conf: {"s3_bucket", "s3_key", "aps_bucket"}.
Connections come from the environment: `aps_default` (the APS emulator) and `aws_default` (the S3 server).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from aps_provider.operators.derivative import APSStartTranslationOperator
from aps_provider.operators.oss import APSCreateBucketOperator, APSUploadFromS3Operator
from aps_provider.sensors.derivative import APSTranslationSensor


def build(dag_id: str, deferrable: bool) -> DAG:
    with DAG(
        dag_id,
        schedule=None,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=4,
        default_args={"retries": 0},
        tags=["aps", "test"],
        doc_md=__doc__,
    ) as dag:
        bucket = APSCreateBucketOperator(
            task_id="ensure_bucket", bucket_key="{{ dag_run.conf['aps_bucket'] }}"
        )
        upload = APSUploadFromS3Operator(
            task_id="upload",
            s3_bucket="{{ dag_run.conf['s3_bucket'] }}",
            s3_key="{{ dag_run.conf['s3_key'] }}",
            bucket_key="{{ dag_run.conf['aps_bucket'] }}",
        )
        # The upload returns {"urn": ..., ...}; the operator takes that dict or a plain URN.
        translate = APSStartTranslationOperator(task_id="start_translation", urn=upload.output)
        wait = APSTranslationSensor(
            task_id="wait_for_translation",
            urn=translate.output,
            deferrable=deferrable,
            poll_interval=2,
            max_poll_interval=5,
            poke_interval=3,
            timeout=timedelta(minutes=10),
        )
        bucket >> upload >> translate >> wait
    return dag


deferrable_dag = build("aps_sensor_deferrable", deferrable=True)
poke_dag = build("aps_sensor_poke", deferrable=False)
