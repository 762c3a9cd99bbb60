"""Backups to and restores from S3: `aps-db backup s3://bucket/prefix` and `aps-db restore
s3://bucket/prefix/<stamp>`, the same backups as a folder's (aps_results.backup), kept in a bucket.

    uri, manifest, removed = backup_to_s3(url, "s3://backups/aps", s3_client, keep=7)
    manifest = restore_from_s3("s3://backups/aps/20261207T...Z", url, s3_client)

The dump is made in a temporary folder (pg_dump needs a file to seek in), then streamed to S3 (boto3's
managed transfer: multipart, bounded memory); the manifest goes up last, so a backup whose upload died is
never listed (a backup is a prefix holding `manifest.json`). Pruning deletes the manifest first for the same
reason. A restore downloads both, checks the dump against the manifest's sha256 and restores as a folder's.
The client is the project's (aps_landing.s3.make_s3_client: connect and read timeouts, bounded retries).
"""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from aps_results.backup import DUMP_NAME, MANIFEST_NAME, BackupError, BackupManifest, backup, restore

SCHEME = "s3://"


def is_s3_uri(place: str) -> bool:
    return place.startswith(SCHEME)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, prefix without a trailing slash) of `s3://bucket/prefix`."""
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise BackupError(f"{uri!r} is not an s3://bucket/prefix URI")
    return parts.netloc, parts.path.strip("/")


def _key(prefix: str, *names: str) -> str:
    return "/".join(part for part in (prefix, *names) if part)


def backups_in(s3_client: Any, bucket: str, prefix: str) -> list[str]:
    """The complete backups (their prefixes, oldest first) under `prefix`: those holding a manifest."""
    found = []
    paginator = s3_client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=_key(prefix) + "/" if prefix else ""):
        for item in page.get("Contents", []):
            stamp, _, name = item["Key"].removeprefix(_key(prefix) + "/" if prefix else "").partition("/")
            if name == MANIFEST_NAME:
                found.append(_key(prefix, stamp))
    return sorted(found)


def backup_to_s3(
    url: str | URL | Engine, uri: str, s3_client: Any, *, keep: int | None = None,
    now: datetime | None = None,
) -> tuple[str, BackupManifest, list[str]]:
    """Back up into `uri` (s3://bucket/prefix): returns the backup's URI, its manifest and the URIs of the
    old backups removed to keep the newest `keep`."""
    bucket, prefix = split_s3_uri(uri)
    with tempfile.TemporaryDirectory(prefix="aps-backup-") as scratch:
        folder, manifest = backup(url, scratch, now=now)
        target = _key(prefix, folder.name)
        s3_client.upload_file(str(folder / DUMP_NAME), bucket, _key(target, DUMP_NAME))
        s3_client.upload_file(str(folder / MANIFEST_NAME), bucket, _key(target, MANIFEST_NAME))
    removed = prune_s3(s3_client, bucket, prefix, keep) if keep else []
    return f"{SCHEME}{bucket}/{target}", manifest, removed


def prune_s3(s3_client: Any, bucket: str, prefix: str, keep: int) -> list[str]:
    """Remove all but the newest `keep` backups under the prefix; returns their URIs."""
    if keep < 1:
        raise ValueError("keep at least one backup")
    old = backups_in(s3_client, bucket, prefix)[:-keep]
    for backup_prefix in old:
        for name in (MANIFEST_NAME, DUMP_NAME):  # the manifest first: a half-removed backup is not listed
            s3_client.delete_object(Bucket=bucket, Key=_key(backup_prefix, name))
    return [f"{SCHEME}{bucket}/{backup_prefix}" for backup_prefix in old]


def restore_from_s3(
    uri: str, url: str | URL | Engine, s3_client: Any, *, replace: bool = False
) -> BackupManifest:
    """Restore the backup at `uri` (s3://bucket/prefix/<stamp>) into the database at `url`, verified."""
    bucket, prefix = split_s3_uri(uri)
    with tempfile.TemporaryDirectory(prefix="aps-restore-") as scratch:
        folder = Path(scratch)
        for name in (MANIFEST_NAME, DUMP_NAME):
            try:
                s3_client.download_file(bucket, _key(prefix, name), str(folder / name))
            except Exception as exc:  # botocore's ClientError: 404, 403 (names the object, holds no secret)
                raise BackupError(f"{uri}: cannot read {name}: {exc}") from None
        return restore(folder, url, replace=replace)
