"""Test DAG for the many-URN wait: upload from S3 -> start translation -> APSTranslationsSensor (deferrable).

The sensor waits on the started URN and on conf["missing_urn"] (never translated), settling each itself
(`fail_on_unsuccessful=False`). Conf: {"s3_bucket", "s3_key", "aps_bucket", "missing_urn"}.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from aps_provider.operators.derivative import APSStartTranslationOperator
from aps_provider.operators.oss import APSCreateBucketOperator, APSUploadFromS3Operator
from aps_provider.sensors.derivative import APSTranslationsSensor

with DAG(
    "aps_sensors_deferrable",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    default_args={"retries": 0},
    tags=["aps", "test"],
    doc_md=__doc__,
):
    bucket = APSCreateBucketOperator(task_id="ensure_bucket", bucket_key="{{ dag_run.conf['aps_bucket'] }}")
    upload = APSUploadFromS3Operator(
        task_id="upload",
        s3_bucket="{{ dag_run.conf['s3_bucket'] }}",
        s3_key="{{ dag_run.conf['s3_key'] }}",
        bucket_key="{{ dag_run.conf['aps_bucket'] }}",
    )
    translate = APSStartTranslationOperator(task_id="start_translation", urn=upload.output)
    wait = APSTranslationsSensor(
        task_id="wait_for_translations",
        urns=[translate.output, "{{ dag_run.conf['missing_urn'] }}"],
        deferrable=True,
        poll_interval=2,
        max_poll_interval=5,
        not_found_grace=3,
        timeout=timedelta(minutes=10),
        fail_on_unsuccessful=False,
    )
    bucket >> upload >> translate >> wait
