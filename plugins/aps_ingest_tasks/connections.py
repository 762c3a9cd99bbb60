"""Airflow connections turned into the Airflow-free clients the pipeline steps take."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aps_landing import Landing
    from aps_pipeline.config import PipelineConfig


def landing_of(config: PipelineConfig) -> Landing:
    """The pipeline's landing; for a bucket, S3 is reached with the client of its `aws_conn_id` S3Hook."""

    def s3_client() -> Any:
        # Imported here: boto3 and the Amazon provider cost ~1 s per task process, and most tasks need no S3.
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=config.aws_conn_id).get_conn()

    return config.landing.open(s3_client)
