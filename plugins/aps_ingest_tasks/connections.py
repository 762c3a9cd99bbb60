"""Airflow connections turned into the Airflow-free clients the pipeline steps take."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aps_landing import Landing
    from aps_pipeline.config import PipelineConfig


def caller_class_name(target_function_name: str = "execute") -> str:
    """The class of the nearest caller frame running `target_function_name` (e.g. the operator's `execute`),
    or "Unknown": what the Amazon provider's hooks put in boto3's user agent (`Caller/...`).

    The provider finds it with `inspect.stack()`, which reads the source lines of every frame on the stack:
    about 0.2 s of CPU per boto3 client, in every task process that opens one. Walking the frames answers
    the same without reading a file."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == target_function_name and "self" in frame.f_locals:
            return type(frame.f_locals["self"]).__name__
        frame = frame.f_back
    return "Unknown"


def s3_client(aws_conn_id: str | None) -> Any:
    """A boto3 S3 client for the Airflow connection `aws_conn_id`: S3Hook's own (credentials, region,
    endpoint, role), with a cheap user agent and the process's shared botocore loader."""
    # Imported here: boto3 and the Amazon provider cost ~1 s per task process, and most tasks need no S3
    # (the workers preload them: aps_ingest_tasks.preload).
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from aps_landing.s3 import share_botocore_loader

    class _S3Hook(S3Hook):
        def _get_caller(self, target_function_name: str = "execute") -> str:
            return caller_class_name(target_function_name)

        def get_session(self, region_name: str | None = None, deferrable: bool = False) -> Any:
            session = super().get_session(region_name=region_name, deferrable=deferrable)
            return session if deferrable else share_botocore_loader(session)

    return _S3Hook(aws_conn_id=aws_conn_id).get_conn()


def landing_of(config: PipelineConfig) -> Landing:
    """The pipeline's landing; for a bucket, S3 is reached with the client of its `aws_conn_id` S3Hook."""
    return config.landing.open(lambda: s3_client(config.aws_conn_id))
