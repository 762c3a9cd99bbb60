"""Copy one landed object into an APS OSS bucket: exactly the pinned version, resumably, never twice.

    uploaded = upload_to_oss(aps, landing, "incoming/a.ifc", bucket_key, object_key,
                             etag=etag, version_id=version_id, sha1=sha1, store=store, skip_existing=True)

One home for what the provider's `APSUploadFromS3Operator` and the pipeline's batch upload step share:
- the source is read pinned to the version that was validated (`version_id` when the landing keeps versions,
  else the ETag): if that version is gone or was overwritten, `ObjectChanged` is raised and no other bytes
  ever reach APS under the old content's name;
- with `skip_existing`, an OSS object already holding this content (same size and, when the caller knows it,
  the same sha1, which OSS reports for every object) is reused and nothing is sent;
- after every finished part the upload's progress (APS `uploadKey` and the finished parts, with the version
  they belong to) is saved in `store`; the next try re-reads the source from the first unfinished byte and
  sends only the missing parts. Progress saved for another version is dropped and the upload starts over.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from aps_client import APSClient, UploadState, to_urn
from aps_client.errors import APSNotFoundError
from aps_landing.base import Landing, ObjectChanged

logger = logging.getLogger(__name__)


class UploadStateStore(Protocol):
    """A small durable key/value store for JSON dicts: where an interrupted upload's progress waits."""

    def get(self, key: str) -> dict[str, Any] | None: ...

    def set(self, key: str, value: dict[str, Any]) -> None: ...

    def delete(self, key: str) -> None: ...


class MemoryUploadStore:
    """In-process store: for tests and for uploads outside Airflow (no resume across processes)."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()  # progress is reported from the client's part threads

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            value = self.values.get(key)
            return dict(value) if value is not None else None

    def set(self, key: str, value: dict[str, Any]) -> None:
        with self._lock:
            self.values[key] = dict(value)

    def delete(self, key: str) -> None:
        with self._lock:
            self.values.pop(key, None)


def upload_state_key(bucket_key: str, object_key: str) -> str:
    return f"aps_upload:{bucket_key}/{object_key}"


@dataclass(frozen=True)
class Uploaded:
    """The OSS object that now holds the content; `sent` is False when an existing object was reused."""

    urn: str
    object_id: str
    bucket_key: str
    object_key: str
    size: int
    sha1: str | None
    sent: bool

    def as_dict(self) -> dict[str, Any]:
        return {"urn": self.urn, "object_id": self.object_id, "bucket_key": self.bucket_key,
                "object_key": self.object_key, "size": self.size, "sha1": self.sha1, "sent": self.sent}


def _version_tag(etag: str, version_id: str | None) -> str:
    return f"{etag}@{version_id}" if version_id else etag


def _saved_state(saved: dict[str, Any] | None, version: str, size: int) -> UploadState | None:
    if not saved:
        return None
    if saved.get("version") != version or saved.get("size") != size:
        logger.warning("The source changed since the interrupted upload (%s -> %s): starting over",
                       saved.get("version"), version)
        return None
    state = UploadState.model_validate(saved["state"])
    logger.info("Resuming the upload: %d part(s) already sent (uploadKey known: %s)",
                len(state.completed_parts), state.upload_key is not None)
    return state


def existing_object(
    aps: APSClient, bucket_key: str, object_key: str, *, size: int, sha1: str | None, region: str | None
) -> Any | None:
    """The OSS object's details when it already holds this content (size, and sha1 when known), else None."""
    try:
        details = aps.oss.object_details(bucket_key, object_key, region=region)
    except APSNotFoundError:
        return None
    if details.size != size or (sha1 and details.sha1 and details.sha1.lower() != sha1.lower()):
        logger.warning("APS %s/%s holds other content (%s bytes, sha1 %s; expected %d bytes, sha1 %s): "
                       "uploading again", bucket_key, object_key, details.size, details.sha1, size, sha1)
        return None
    return details


def upload_to_oss(
    aps: APSClient,
    landing: Landing,
    key: str,
    bucket_key: str,
    object_key: str,
    *,
    etag: str | None = None,
    version_id: str | None = None,
    size: int | None = None,
    sha1: str | None = None,
    region: str | None = None,
    content_type: str | None = None,
    skip_existing: bool = False,
    store: UploadStateStore | None = None,
) -> Uploaded:
    """Upload `key`'s pinned version (its current one when neither `etag` nor `version_id` is given).

    Raises `ObjectChanged` when the pinned version is no longer there.
    """
    if etag is None and version_id is None:  # nothing pinned by the caller: its current version
        head = landing.head(key)
        etag, version_id, size = head.etag, head.version_id, head.size
    elif size is None:
        head = landing.head(key)
        if etag is not None and head.etag != etag and not version_id:
            raise ObjectChanged(f"{landing.url(key)} changed since it was validated (ETag {etag} -> "
                                f"{head.etag})", code="PreconditionFailed")
        size = head.size
    store = store or MemoryUploadStore()
    state_key = upload_state_key(bucket_key, object_key)
    version = _version_tag(etag or "", version_id)

    details = (existing_object(aps, bucket_key, object_key, size=size, sha1=sha1, region=region)
               if skip_existing else None)
    sent = details is None
    if details is None:
        state = _saved_state(store.get(state_key), version, size)

        def open_at(offset: int) -> BinaryIO:
            # Every read, the resumed ones too, is pinned: never bytes of another version.
            return landing.read_range(key, offset, etag=etag, version_id=version_id)

        def save_progress(progress: UploadState) -> None:
            store.set(state_key, {"version": version, "size": size,
                                  "state": progress.model_dump(mode="json")})

        logger.info("Uploading %s (%d bytes) to APS %s/%s", landing.url(key), size, bucket_key,
                    object_key)
        details = aps.oss.upload(bucket_key, object_key, open_at, size, region=region,
                                 content_type=content_type, state=state, on_progress=save_progress)
    else:
        logger.info("APS %s/%s already holds these %d bytes: not uploading again", bucket_key, object_key,
                    size)
    store.delete(state_key)  # done: a later upload of this object starts fresh
    return Uploaded(urn=to_urn(details.object_id), object_id=details.object_id,
                    bucket_key=details.bucket_key, object_key=details.object_key,
                    size=details.size if details.size is not None else size, sha1=details.sha1,
                    sent=sent)
