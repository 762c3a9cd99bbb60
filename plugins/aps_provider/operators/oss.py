"""Operators for APS Object Storage Service (OSS): make sure a bucket exists, upload a file from S3."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from airflow.sdk.exceptions import AirflowFailException

from aps_client import UploadState, to_urn
from aps_client.errors import APSForbiddenError, APSNotFoundError
from aps_provider.base import APSBaseOperator, aps_template_fields
from aps_provider.links import APSManifestLink, APSViewerLink
from aps_provider.upload_state import (
    MemoryUploadStore,
    TaskStateUploadStore,
    UploadStateStore,
    upload_state_key,
)

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
        self.log.info("APS bucket %s is ready (policy %s)", bucket.bucket_key,
                      bucket.policy_key or self.policy)
        return bucket.bucket_key


class APSUploadFromS3Operator(APSBaseOperator):
    """Stream an S3 object into an APS OSS bucket (signed S3 multipart upload), resumably.

    The object is read through the Amazon provider's S3 hook as a stream, never downloaded whole; memory
    stays bounded by the APS connection's part size x parallelism. After every finished part the upload's
    progress (APS `uploadKey`, finished parts, and the S3 ETag it belongs to) is saved in `state_store`; a
    retried task picks it up, re-reads S3 from the first unfinished byte (ranged GET) and sends only the
    missing parts. If the S3 object changed in between (another ETag), the upload starts over.

    With `skip_existing`, an OSS object of the same key and size is taken as already uploaded and nothing is
    sent: use it when object keys are content-addressed (the ingest DAG names objects by sha256), so a
    re-run never uploads the same content twice.

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
    :param skip_existing: Do not upload when OSS already holds `object_key` with the S3 object's size.
    :param state_store: Where progress is kept between tries (see `aps_provider.upload_state`); default:
        Airflow's task state store, which survives retries of this task instance.
    """

    template_fields: Sequence[str] = aps_template_fields("s3_bucket", "s3_key", "bucket_key", "object_key",
                                                         "content_type")
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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
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
        object_key = self.object_key or self.s3_key
        store = self._state_store(context)
        state_key = upload_state_key(self.bucket_key, object_key)

        # Imported here so that parsing a DAG (every task process does) does not load boto3.
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from aps_landing.s3 import S3Landing

        landing = S3Landing(S3Hook(aws_conn_id=self.aws_conn_id).get_conn(), self.s3_bucket)
        head = landing.head(self.s3_key)
        size, etag = head.size, head.etag

        state = self._saved_state(store.get(state_key), etag, size)

        def open_at(offset: int) -> BinaryIO:
            # Pinned to the ETag: resume only from the very object version the saved parts came from.
            return landing.read_range(self.s3_key, offset, etag=etag)

        def save_progress(progress: UploadState) -> None:
            store.set(state_key, {"etag": etag, "size": size, "state": progress.model_dump(mode="json")})

        with self.hook.get_client() as aps:
            details = self._existing(aps, object_key, size) if self.skip_existing else None
            if details is None:
                self.log.info("Uploading s3://%s/%s (%d bytes) to APS %s/%s", self.s3_bucket, self.s3_key,
                              size, self.bucket_key, object_key)
                details = aps.oss.upload(self.bucket_key, object_key, open_at, size, region=self.region,
                                         content_type=self.content_type, state=state,
                                         on_progress=save_progress)
                self.log.info("Uploaded %s (sha1 %s)", details.object_id, details.sha1)
        store.delete(state_key)  # done: a later run of this task must start a fresh upload
        urn = to_urn(details.object_id)
        self.log.info("URN %s", urn)
        return {"urn": urn, "object_id": details.object_id, "bucket_key": details.bucket_key,
                "object_key": details.object_key, "size": details.size if details.size is not None else size,
                "sha1": details.sha1}

    def _existing(self, aps: Any, object_key: str, size: int) -> Any | None:
        """The OSS object's details when it is already there with this size, else None."""
        try:
            details = aps.oss.object_details(self.bucket_key, object_key, region=self.region)
        except APSNotFoundError:
            return None
        if details.size != size:
            self.log.warning("APS %s/%s exists with %s bytes, the S3 object has %d: uploading again",
                             self.bucket_key, object_key, details.size, size)
            return None
        self.log.info("APS %s/%s already holds these %d bytes: not uploading again", self.bucket_key,
                      object_key, size)
        return details

    def _saved_state(self, saved: dict[str, Any] | None, etag: str, size: int) -> UploadState | None:
        if not saved:
            return None
        if saved.get("etag") != etag or saved.get("size") != size:
            self.log.warning("The S3 object changed since the interrupted upload (ETag %s -> %s): "
                             "starting over", saved.get("etag"), etag)
            return None
        state = UploadState.model_validate(saved["state"])
        self.log.info("Resuming the upload: %d part(s) already sent (uploadKey known: %s)",
                      len(state.completed_parts), state.upload_key is not None)
        return state
