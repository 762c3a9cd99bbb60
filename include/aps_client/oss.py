"""OSS clients (Object Storage Service): buckets, object details and deletion, the multipart upload
(aps-api.md §2.2-2.7).

The requests themselves live in oss_requests.py; the upload helper in upload.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO

from aps_client.models import Bucket, ObjectDetails, UploadState
from aps_client.oss_requests import (
    bucket_details_flow,
    delete_object_flow,
    ensure_bucket_flow,
    object_details_flow,
)
from aps_client.transport import AsyncTransport, SyncTransport
from aps_client.upload import MultipartUpload, Source


class OSSClient:
    """Buckets, object details and the multipart upload, with blocking I/O."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport
        self._region = transport.config.region

    def ensure_bucket(self, bucket_key: str, policy: str = "transient", region: str | None = None) -> Bucket:
        return self._transport.run(ensure_bucket_flow(bucket_key, policy, region or self._region))

    def bucket_details(self, bucket_key: str, region: str | None = None) -> Bucket:
        return self._transport.run(bucket_details_flow(bucket_key, region or self._region))

    def object_details(self, bucket_key: str, object_key: str, region: str | None = None) -> ObjectDetails:
        return self._transport.run(object_details_flow(bucket_key, object_key, region or self._region))

    def delete_object(self, bucket_key: str, object_key: str, region: str | None = None) -> None:
        """Delete the object; an absent one raises APSNotFoundError."""
        self._transport.run(delete_object_flow(bucket_key, object_key, region or self._region))

    def upload(
        self,
        bucket_key: str,
        object_key: str,
        source: BinaryIO | Source,
        size: int,
        *,
        region: str | None = None,
        content_type: str | None = None,
        state: UploadState | None = None,
        on_progress: Callable[[UploadState], None] | None = None,
    ) -> ObjectDetails:
        """Signed-S3 multipart upload; see aps_client.upload.MultipartUpload for the details."""
        return MultipartUpload(
            self._transport,
            bucket_key,
            object_key,
            source,
            size,
            region=region or self._region,
            content_type=content_type,
            state=state,
            on_progress=on_progress,
        ).run()


class AsyncOSSClient:
    """OSS reads and ensure_bucket, awaited. Uploads belong to the sync client (it uses threads)."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport
        self._region = transport.config.region

    async def ensure_bucket(
        self, bucket_key: str, policy: str = "transient", region: str | None = None
    ) -> Bucket:
        return await self._transport.run(ensure_bucket_flow(bucket_key, policy, region or self._region))

    async def bucket_details(self, bucket_key: str, region: str | None = None) -> Bucket:
        return await self._transport.run(bucket_details_flow(bucket_key, region or self._region))

    async def object_details(
        self, bucket_key: str, object_key: str, region: str | None = None
    ) -> ObjectDetails:
        return await self._transport.run(object_details_flow(bucket_key, object_key, region or self._region))

    async def delete_object(self, bucket_key: str, object_key: str, region: str | None = None) -> None:
        await self._transport.run(delete_object_flow(bucket_key, object_key, region or self._region))
