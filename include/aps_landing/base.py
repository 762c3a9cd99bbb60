"""The `Landing` protocol (list, head, read a range, copy, put), its object types and errors, and the reads
every step builds on it (the first bytes, a small object, the streamed sha256 and SHA-1).

Keys are S3-style: '/'-separated, relative to the landing's root. ETags are given without quotes. A read or a
copy may be pinned to the version that was discovered (`version_id` when the landing keeps versions, else
`etag`): if that version is no longer there, the landing raises `ObjectChanged` instead of handing over other
bytes. A landing that refuses an object (no permission, an archived storage class) raises `AccessRefused`;
any other `LandingError` may pass when asked again. Nothing here reads a whole object into memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, Protocol, runtime_checkable

HASH_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ListedObject:
    """One entry of a listing."""

    key: str
    etag: str
    size: int
    last_modified: datetime | None


@dataclass(frozen=True)
class ObjectHead:
    """What a HEAD tells about one object."""

    key: str
    etag: str
    size: int
    version_id: str | None  # None when the landing keeps no versions
    content_type: str | None
    metadata: Mapping[str, str] = field(default_factory=dict)  # user metadata (flat strings)
    last_modified: datetime | None = None  # when this version landed (orders a document's versions)


class LandingError(RuntimeError):
    """The landing could not do what was asked (the message names the object and the cause)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class ObjectChanged(LandingError):
    """The object was replaced or deleted since it was discovered (the pinned version is not there)."""


class ObjectGone(ObjectChanged):
    """There is no such object (any more)."""


class AccessRefused(LandingError):
    """The landing refuses this object (access denied, or archived in a storage class that cannot be read).

    An answer about the object, not a passing failure: asking again gives the same answer.
    """


class UnsafeKey(LandingError, ValueError):
    """The landing cannot hold this key (e.g. a '..' segment in a local folder)."""


@runtime_checkable
class Landing(Protocol):
    """Where files land. Implementations: `aps_landing.s3.S3Landing`, `aps_landing.local.LocalLanding`."""

    @property
    def location(self) -> str:
        """The bucket name or the folder: what the files registry records as the object's bucket."""
        ...

    def url(self, key: str) -> str:
        """`s3://bucket/key` or `file:///folder/key`, for messages and logs."""
        ...

    def list(self, prefix: str) -> Iterator[ListedObject]:
        """Every object whose key starts with `prefix`, page by page."""
        ...

    def head(self, key: str) -> ObjectHead:
        """The object's ETag, size, version, content type and user metadata; `ObjectGone` if there is none."""
        ...

    def read_range(
        self,
        key: str,
        start: int = 0,
        length: int | None = None,
        *,
        etag: str | None = None,
        version_id: str | None = None,
    ) -> BinaryIO:
        """A stream of `length` bytes (None: to the end) from `start`; the caller closes it.

        Pinned by `version_id`, else `etag`, when given: `ObjectChanged` if that version is not there. An
        empty range (an empty object) is an empty stream.
        """
        ...

    def copy(
        self, source_key: str, target_key: str, *, etag: str, version_id: str | None = None, size: int = 0
    ) -> None:
        """Copy exactly the pinned version of `source_key` to `target_key`, inside the landing.

        `ObjectChanged` if that version is not there; `size` lets S3 choose a multipart copy.
        """
        ...

    def put(
        self,
        key: str,
        body: bytes,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Write a small object whole (a reason file, a test sample), replacing any object of that key."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; a missing one is not an error. The pipeline deletes only what it wrote itself
        (old quarantine copies): landed files are never deleted. A versioned bucket keeps the old versions."""
        ...


def read_head(
    landing: Landing,
    key: str,
    size: int,
    limit: int,
    *,
    etag: str | None = None,
    version_id: str | None = None,
) -> bytes:
    """The first `limit` bytes of the pinned version (one ranged read)."""
    if size <= 0:
        return b""  # S3 answers a Range on an empty object with 416
    body = landing.read_range(key, 0, min(size, limit), etag=etag, version_id=version_id)
    try:
        return body.read(limit)
    finally:
        body.close()


def read_small(landing: Landing, key: str, limit: int) -> bytes | None:
    """A small object such as a sidecar, at most `limit + 1` bytes (so callers can tell it is too big).

    None when there is no such object.
    """
    try:
        body = landing.read_range(key, 0, limit + 1)
    except ObjectGone:
        return None
    try:
        return body.read(limit + 1)
    finally:
        body.close()


@dataclass(frozen=True)
class ContentDigests:
    """What one full read of an object gives: its hex sha256 (the pipeline's content key), hex SHA-1 (APS's
    digest of an object) and how many bytes were read."""

    sha256: str
    sha1: str
    size: int


def digests_of(
    landing: Landing, key: str, *, etag: str | None = None, version_id: str | None = None
) -> ContentDigests:
    """sha256 and SHA-1 of the pinned version in one pass, streamed in 1 MiB chunks: memory stays flat."""
    sha256, sha1 = hashlib.sha256(), hashlib.sha1(usedforsecurity=False)  # SHA-1: APS's digest, no security
    total = 0
    body = landing.read_range(key, etag=etag, version_id=version_id)
    try:
        while chunk := body.read(HASH_CHUNK_BYTES):
            sha256.update(chunk)
            sha1.update(chunk)
            total += len(chunk)
    finally:
        body.close()
    return ContentDigests(sha256.hexdigest(), sha1.hexdigest(), total)


def sha256_of(
    landing: Landing, key: str, *, etag: str | None = None, version_id: str | None = None
) -> tuple[str, int]:
    """(hex sha256, bytes read) of the pinned version (`digests_of`, for callers that need only that)."""
    digests = digests_of(landing, key, etag=etag, version_id=version_id)
    return digests.sha256, digests.size
