"""Operators for APS Object Storage Service (OSS): make sure a bucket exists, upload a file from S3."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from aps_client.errors import APSForbiddenError
from aps_landing.base import ObjectChanged
from aps_landing.transfer import upload_to_oss
from aps_provider.base import APSBaseOperator, aps_template_fields
from aps_provider.links import APSManifestLink, APSViewerLink
from aps_provider.upload_state import MemoryUploadStore, TaskStateUploadStore, UploadStateStore

if TYPE_CHECKING:
    from airflow.sdk import Context


class APSCreateBucketOperator(APSBaseOperator):
    """Make sure an OSS bucket exists (create it, or accept that this application already owns it).

    Bucket keys are global across all APS applications: a key owned by another application fails the task
    with APS's 403 explanation. Returns the bucket key.

    :param bucket_key: Bucket key (templated), `[-_.a-z0-9]{3,128}`.
    :param policy: Retention policy (templated): `transient` (24 h), `temporary` (30 days) or `persistent`.
    :param region: APS region of the bucket (templated); default: the connection's.
    :param aps_conn_id: The `aps` connection.
    """

    template_fields: Sequence[str] = aps_template_fields("bucket_key", "policy")
    ui_color = "#c9e7f5"

    def __init__(
        self,
        *,
        bucket_key: str,
        policy: str = "transient",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.bucket_key = bucket_key
        self.policy = policy

    def execute(self, context: Context) -> str:
        with self.hook.get_client() as aps:
            try:
                bucket = aps.oss.ensure_bucket(self.bucket_key, policy=self.policy, region=self.region)
            except APSForbiddenError as exc:
                # Another application owns the key (or the credentials lack a scope): retrying cannot help.
                raise AirflowFailException(str(exc)) from exc
        # The creation date tells a bucket this application made long ago from one just (re)made.
        created = bucket.created_at.isoformat() if bucket.created_at else "unknown"
        self.log.info("APS bucket %s is ready (policy %s, created %s)", bucket.bucket_key,
                      bucket.policy_key or self.policy, created)
        return bucket.bucket_key


class APSUploadFromS3Operator(APSBaseOperator):
    """Stream an S3 object into an APS OSS bucket (signed S3 multipart upload), resumably.

    The object is read through the Amazon provider's S3 hook as a stream, never downloaded whole; memory
    stays bounded by the APS connection's part size x parallelism. Give `s3_etag` (and `s3_version_id` for a
    versioned bucket) to upload exactly the version you checked: if it was overwritten or deleted, the task
    fails without retrying and no other bytes are sent. After every finished part the upload's progress is
    saved in `state_store`; a retried task re-reads S3 from the first unfinished byte (ranged GET, pinned to
    the same version) and sends only the missing parts. See `aps_landing.transfer.upload_to_oss`.

    With `skip_existing`, an OSS object of the same key holding the same content (same size, and the same
    sha1 when `sha1` is given) is reused and nothing is sent: use it when object keys are content-addressed,
    so a re-run never uploads the same content twice.

    Returns `{"urn", "object_id", "bucket_key", "object_key", "size", "sha1"}`; pass `.output` as is to
    `APSStartTranslationOperator`.

    :param s3_bucket: Source S3 bucket (templated).
    :param s3_key: Source S3 key (templated).
    :param bucket_key: Target OSS bucket (templated); it must exist (see `APSCreateBucketOperator`).
    :param object_key: Target object key (templated); default: the S3 key.
    :param region: APS region (templated); default: the connection's.
    :param content_type: Content type recorded by OSS (templated).
    :param aws_conn_id: The `aws` connection of the S3 source.
    :param aps_conn_id: The `aps` connection.
    :param s3_etag: Upload only this version of the object (templated); default: whatever is there now.
    :param s3_version_id: Versioned bucket: upload only this version (templated).
    :param sha1: The content's sha1, hex (templated): `skip_existing` then compares content, not only size.
    :param skip_existing: Do not upload when OSS already holds `object_key` with this content.
    :param state_store: Where progress is kept between tries (see `aps_provider.upload_state`); default:
        Airflow's task state store, which survives retries of this task instance.
    """

    template_fields: Sequence[str] = aps_template_fields("s3_bucket", "s3_key", "bucket_key", "object_key",
                                                         "content_type", "s3_etag", "s3_version_id", "sha1")
    ui_color = "#c9e7f5"
    operator_extra_links = (APSManifestLink(), APSViewerLink())

    def __init__(
        self,
        *,
        s3_bucket: str,
        s3_key: str,
        bucket_key: str,
        object_key: str | None = None,
        content_type: str | None = None,
        aws_conn_id: str | None = "aws_default",
        skip_existing: bool = False,
        state_store: UploadStateStore | None = None,
        s3_etag: str | None = None,
        s3_version_id: str | None = None,
        sha1: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.s3_etag = s3_etag
        self.s3_version_id = s3_version_id
        self.sha1 = sha1
        self.s3_bucket = s3_bucket
        self.s3_key = s3_key
        self.bucket_key = bucket_key
        self.object_key = object_key
        self.content_type = content_type
        self.aws_conn_id = aws_conn_id
        self.skip_existing = skip_existing
        self.state_store = state_store

    def _state_store(self, context: Context) -> UploadStateStore:
        if self.state_store is not None:
            return self.state_store
        task_state_store = context.get("task_state_store")
        if task_state_store is not None:
            return TaskStateUploadStore(task_state_store)
        self.log.warning("No task state store in the context: an interrupted upload will start over")
        return MemoryUploadStore()

    def execute(self, context: Context) -> dict[str, Any]:
        # Imported here so that parsing a DAG (every task process does) does not load boto3.
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from aps_landing.s3 import S3Landing

        landing = S3Landing(S3Hook(aws_conn_id=self.aws_conn_id).get_conn(), self.s3_bucket)
        with self.hook.get_client() as aps:
            try:
                uploaded = upload_to_oss(
                    aps, landing, self.s3_key, self.bucket_key, self.object_key or self.s3_key,
                    etag=self.s3_etag or None, version_id=self.s3_version_id or None, sha1=self.sha1 or None,
                    region=self.region, content_type=self.content_type, skip_existing=self.skip_existing,
                    store=self._state_store(context),
                )
            except ObjectChanged as exc:  # the pinned version is gone: no retry brings it back
                raise AirflowFailException(str(exc)) from exc
        self.log.info("%s %s (sha1 %s), URN %s", "Uploaded" if uploaded.sent else "Reused",
                      uploaded.object_id, uploaded.sha1, uploaded.urn)
        result = uploaded.as_dict()
        del result["sent"]
        return result
