"""The few S3 reads the pipeline makes, on a plain boto3 S3 client (the DAG passes S3Hook(...).get_conn()).

Reads pin the object version they were discovered with (VersionId when the bucket is versioned, else
If-Match on the ETag), so a file replaced mid-run is reported as changed rather than silently mixed up.
Nothing here reads a whole object into memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

HASH_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ListedObject:
    key: str
    etag: str  # without the quotes S3 puts around it
    size: int
    last_modified: datetime | None


class ObjectChanged(RuntimeError):
    """The object was replaced or deleted since it was discovered."""


def clean_etag(etag: str) -> str:
    return etag.strip().strip('"')


def list_objects(s3: Any, bucket: str, prefix: str) -> Iterator[ListedObject]:
    """Every object under `prefix`, page by page (list_objects_v2 paginator)."""
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            yield ListedObject(
                item["Key"], clean_etag(item["ETag"]), int(item["Size"]), item.get("LastModified")
            )


def _pin(etag: str | None, version_id: str | None) -> dict[str, str]:
    if version_id:
        return {"VersionId": version_id}
    return {"IfMatch": f'"{etag}"'} if etag else {}


def _is(error: ClientError, *codes: str) -> bool:
    err = error.response.get("Error", {})
    status = str(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return err.get("Code") in codes or status in codes


def _get(s3: Any, bucket: str, key: str, **kwargs: Any) -> Any:
    try:
        return s3.get_object(Bucket=bucket, Key=key, **kwargs)
    except ClientError as exc:
        if _is(exc, "PreconditionFailed", "412"):
            raise ObjectChanged(
                f"s3://{bucket}/{key} changed since it was discovered (ETag differs)"
            ) from None
        if _is(exc, "NoSuchKey", "NoSuchVersion", "404"):
            raise ObjectChanged(f"s3://{bucket}/{key} no longer exists (deleted since discovery)") from None
        raise


def head_object(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    """HEAD: VersionId, user Metadata, ContentType, ... (ObjectChanged if it has gone)."""
    try:
        return dict(s3.head_object(Bucket=bucket, Key=key))
    except ClientError as exc:
        if _is(exc, "NoSuchKey", "404", "NotFound"):
            raise ObjectChanged(f"s3://{bucket}/{key} no longer exists") from None
        raise


def read_head(
    s3: Any,
    bucket: str,
    key: str,
    size: int,
    limit: int,
    *,
    etag: str | None = None,
    version_id: str | None = None,
) -> bytes:
    """The first `limit` bytes (one ranged GET)."""
    if size <= 0:
        return b""  # a Range on an empty object is answered 416
    end = min(size, limit) - 1
    body = _get(s3, bucket, key, Range=f"bytes=0-{end}", **_pin(etag, version_id))["Body"]
    try:
        return body.read(limit)
    finally:
        body.close()


def read_small_object(s3: Any, bucket: str, key: str, limit: int) -> bytes | None:
    """A small object such as a sidecar, at most `limit + 1` bytes (so callers can tell it is too big).

    None when there is no such object.
    """
    try:
        response = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{limit}")
    except ClientError as exc:
        if _is(exc, "NoSuchKey", "404"):
            return None
        if _is(exc, "InvalidRange", "416"):
            return b""  # an empty object
        raise
    body = response["Body"]
    try:
        return body.read(limit + 1)
    finally:
        body.close()


def sha256_of_object(
    s3: Any, bucket: str, key: str, *, etag: str | None = None, version_id: str | None = None
) -> tuple[str, int]:
    """(hex sha256, bytes read), streaming the object in 1 MiB chunks: memory stays flat whatever its size."""
    digest = hashlib.sha256()
    total = 0
    # Not `with body:`: botocore's StreamingBody.__enter__ returns the raw urllib3 stream.
    body = _get(s3, bucket, key, **_pin(etag, version_id))["Body"]
    try:
        for chunk in body.iter_chunks(HASH_CHUNK_BYTES):
            digest.update(chunk)
            total += len(chunk)
    finally:
        body.close()
    return digest.hexdigest(), total
