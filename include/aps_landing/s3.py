"""The S3 landing: a bucket through a plain boto3 S3 client (in Airflow, S3Hook(...).get_conn()).

The only module of the project's packages that talks to boto3/botocore. Reads and copies pin the version
they were discovered with (VersionId when the bucket is versioned, else If-Match on the ETag), so a file
replaced mid-run is reported as changed rather than silently mixed up. S3 error responses become the
protocol's errors: `ObjectGone` (404), `ObjectChanged` (412), `AccessRefused` (403: access denied, or an
archived object's InvalidObjectState), `LandingError` (anything else, with its code).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.loaders import create_loader

from aps_landing.base import AccessRefused, LandingError, ListedObject, ObjectChanged, ObjectGone, ObjectHead

MAX_COPY_OBJECT_BYTES = 5 * 1024**3  # S3's limit for a single CopyObject
_GONE = ("NoSuchKey", "NoSuchVersion", "NotFound", "404")
_CHANGED = ("PreconditionFailed", "412")
_EMPTY_RANGE = ("InvalidRange", "416")
# Refusals: no permission (a HEAD's 403 has no body, so its code is the status), or an archived object.
_REFUSED = ("AccessDenied", "AllAccessDisabled", "403", "InvalidObjectState")


# Connect and read timeouts for the clients made here: a hung endpoint fails the call instead of the process.
# The read timeout is above SQS's longest long poll (20 s).
CLIENT_TIMEOUTS = Config(connect_timeout=10, read_timeout=60, retries={"max_attempts": 5, "mode": "standard"})


@functools.cache
def shared_botocore_loader() -> Any:
    """The process's one botocore data loader (it caches the service models it has read).

    Every boto3 session builds its own loader, and creating an S3 client then parses botocore's JSON again
    (the S3 model and its endpoint rules: ~0.3 s of CPU). A process that filled this loader before forking
    (`warm_s3_loader`, called by the Airflow workers before they fork task processes) spares its children
    that parse; `share_botocore_loader` puts it in a boto3 session."""
    return create_loader()


def share_botocore_loader(session: Any) -> Any:
    """Make boto3 `session`'s clients read service models through `shared_botocore_loader`; returns it.
    boto3 keeps its botocore session private (`_session`): without one, the session keeps its own loader."""
    core = getattr(session, "_session", None)
    if core is not None and hasattr(core, "register_component"):
        core.register_component("data_loader", shared_botocore_loader())
    return session


def warm_s3_loader() -> None:
    """Create (and close) an S3 client on the shared loader, so that it holds what S3 clients read. Static
    credentials: nothing is looked up on the network, and no call is made."""
    session = share_botocore_loader(boto3.session.Session(
        aws_access_key_id="warm-up", aws_secret_access_key="warm-up", region_name="us-east-1"))
    session.client("s3").close()


def make_aws_client(
    service: str, *, endpoint_url: str | None = None, access_key: str | None = None,
    secret_key: str | None = None, region: str | None = None,
) -> Any:
    """A boto3 client outside Airflow (the dev stack, tests and the command-line tools; in Airflow the Amazon
    provider's hooks make them): `s3`, the `sqs` queue of the landing's notifications, `secretsmanager` for
    the dev stack's connections. Every call times out (CLIENT_TIMEOUTS), and retries are bounded."""
    return boto3.client(service, endpoint_url=endpoint_url, aws_access_key_id=access_key,
                        aws_secret_access_key=secret_key, region_name=region, config=CLIENT_TIMEOUTS)


def make_s3_client(**kwargs: Any) -> Any:
    """A boto3 S3 client (`make_aws_client`'s keyword arguments)."""
    return make_aws_client("s3", **kwargs)


def clean_etag(etag: str) -> str:
    """An ETag without the quotes S3 puts around it."""
    return etag.strip().strip('"')


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _is(error: ClientError, codes: tuple[str, ...]) -> bool:
    # By the error code when S3 sent one (NoSuchBucket is a 404 too, but no missing object); a HEAD has no
    # body, and botocore gives the status as its code.
    code = _code(error)
    status = str(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return code in codes if code else status in codes


def _pin(etag: str | None, version_id: str | None, *, copy: bool = False) -> dict[str, str]:
    if version_id:
        return {} if copy else {"VersionId": version_id}  # a copy names the version in CopySource
    if not etag:
        return {}
    return {"CopySourceIfMatch" if copy else "IfMatch": f'"{etag}"'}


class S3Landing:
    """A landing bucket. `client` is a boto3 S3 client; nothing else about it is assumed."""

    def __init__(self, client: Any, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    def __repr__(self) -> str:
        return f"S3Landing({self._bucket!r})"

    @property
    def location(self) -> str:
        return self._bucket

    def url(self, key: str) -> str:
        return f"s3://{self._bucket}/{key}"

    def _error(self, exc: ClientError, key: str, *, pinned: bool) -> LandingError:
        if _is(exc, _CHANGED):
            return ObjectChanged(f"{self.url(key)} changed since it was discovered (ETag differs)", "412")
        if _is(exc, _GONE):
            since = " (deleted since discovery)" if pinned else ""
            return ObjectGone(f"{self.url(key)} no longer exists{since}", "404")
        if _is(exc, _REFUSED):
            return AccessRefused(f"{self.url(key)}: access refused: {_code(exc)}: {exc}", _code(exc))
        return LandingError(f"{self.url(key)}: {_code(exc) or 'error'}: {exc}", _code(exc))

    def list(self, prefix: str) -> Iterator[ListedObject]:
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield ListedObject(
                        item["Key"], clean_etag(item["ETag"]), int(item["Size"]), item.get("LastModified")
                    )
        except ClientError as exc:
            raise self._error(exc, prefix, pinned=False) from exc

    def head(self, key: str) -> ObjectHead:
        try:
            response = self._client.head_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            raise self._error(exc, key, pinned=False) from exc
        version_id = response.get("VersionId")
        return ObjectHead(
            key=key,
            etag=clean_etag(response.get("ETag", "")),
            size=int(response.get("ContentLength", 0)),
            version_id=version_id if version_id not in (None, "null") else None,  # "null": unversioned
            content_type=response.get("ContentType"),
            metadata={str(k): str(v) for k, v in (response.get("Metadata") or {}).items()},
            last_modified=response.get("LastModified"),
        )

    def read_range(
        self,
        key: str,
        start: int = 0,
        length: int | None = None,
        *,
        etag: str | None = None,
        version_id: str | None = None,
    ) -> BinaryIO:
        if length == 0:
            return io.BytesIO(b"")
        request = _pin(etag, version_id)
        if length is not None:
            request["Range"] = f"bytes={start}-{start + length - 1}"
        elif start:
            request["Range"] = f"bytes={start}-"
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=key, **request)
        except ClientError as exc:
            if _is(exc, _EMPTY_RANGE):
                return io.BytesIO(b"")  # a range past the end, e.g. any range of an empty object
            raise self._error(exc, key, pinned=bool(etag or version_id)) from exc
        # botocore's StreamingBody: read(n) and close() are all callers use (not `with`: its __enter__
        # returns the raw urllib3 stream).
        return response["Body"]

    def copy(
        self, source_key: str, target_key: str, *, etag: str, version_id: str | None = None, size: int = 0
    ) -> None:
        source: dict[str, str] = {"Bucket": self._bucket, "Key": source_key}
        if version_id:
            source["VersionId"] = version_id
        pin = _pin(etag, version_id, copy=True)
        try:
            if size > MAX_COPY_OBJECT_BYTES:
                # boto3's managed multipart copy (UploadPartCopy): still server-side.
                self._client.copy(source, self._bucket, target_key, ExtraArgs=pin)
                return
            response = self._client.copy_object(CopySource=source, Bucket=self._bucket, Key=target_key, **pin)
        except ClientError as exc:
            raise self._error(exc, source_key, pinned=True) from exc
        copied = clean_etag(response.get("CopyObjectResult", {}).get("ETag", ""))
        if not version_id and "-" not in etag and copied and copied != etag:
            # Some S3-compatible servers ignore CopySourceIfMatch: a newer version was copied, so undo it.
            self._client.delete_object(Bucket=self._bucket, Key=target_key)
            raise ObjectChanged(f"{self.url(source_key)} changed since it was discovered (ETag differs)")

    def put(
        self,
        key: str,
        body: bytes,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        extra: dict[str, Any] = {}
        if content_type:
            extra["ContentType"] = content_type
        if metadata:
            extra["Metadata"] = dict(metadata)
        try:
            self._client.put_object(Bucket=self._bucket, Key=key, Body=body, **extra)
        except ClientError as exc:
            raise self._error(exc, key, pinned=False) from exc

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if not _is(exc, _GONE):
                raise self._error(exc, key, pinned=False) from exc
