"""Documents and their versions: which document a loaded file continues, and the versions' numbers.

    register_versions(conn, file_ids)   # each loaded file among them becomes a version of its document
    numbered_versions()                 # document_versions with `number`: a subquery to select from
    LANDING_ORDER                       # the one order that numbers a document's versions
    mark_deleted(conn, pipeline, bucket, keys)   # keys gone from the landing: their versions are deleted

A document is a pipeline's landing key, or the metadata field `document` (`DOCUMENT_FIELD`) when a producer
wants a renamed file to continue one. Every loaded file is one version of its document, registered in the
same transaction that marks it loaded (`aps_results.registry.set_file_state` calls `register_versions`), so
a loaded file without its version is never seen.

Numbers are derived, never stored: a version's number is its place in LANDING_ORDER (the object version's
LastModified, then its S3 VersionId, then the file's id), counted from 1. A version discovered after a newer
one (a listing that missed it, an event that came late) so takes its own place, and the versions after it
move up by one; stored diffs are keyed by version ids, not numbers, so none goes stale
(aps_versions.stored computes the diffs the new neighbours need).

Deletions: discovery tells which keys left the landing (an event-driven run's key whose HEAD finds no
object, an `s3:ObjectRemoved:*` event's among them; or a full listing that no longer has a key), and the
newest version of each is marked `deleted` with the time; its results stay. A document is deleted when its
latest version is: a renamed file's old key going away leaves the document that continues under the new
one. A new version of a deleted document revives it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, Subquery, case, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from aps_results.models import Document, DocumentVersion, File, FileState, VersionState

#: The metadata field naming the document a file continues (else its landing key).
DOCUMENT_FIELD = "document"
_MAX_KEY_CHARS = 1024

#: The order of a document's versions: when each landed, S3's VersionId for equal times (LastModified from a
#: HEAD has whole seconds), and the file's id last (discovery order, for landings that keep no versions).
LANDING_ORDER = (DocumentVersion.landed_at, DocumentVersion.s3_version_id, DocumentVersion.file_id)


def document_key(s3_key: str, metadata: Mapping[str, Any]) -> str:
    """The document a file belongs to: the metadata's `document` when it is a usable text, else its key."""
    named = metadata.get(DOCUMENT_FIELD)
    if isinstance(named, str) and named.strip() and len(named) <= _MAX_KEY_CHARS:
        return named.strip()
    return s3_key


def _project(metadata: Mapping[str, Any]) -> str | None:
    project = metadata.get("project")
    return str(project) if project not in (None, "") else None


def register_versions(conn: Connection, file_ids: Sequence[int]) -> list[int]:
    """Make each loaded file among `file_ids` a version of its document (created when new); returns the
    ids of the versions created. Safe to repeat: a file is one version, once. A new version revives a
    deleted document."""
    if not file_ids:
        return []
    files = conn.execute(
        select(File.id, File.pipeline, File.s3_key, File.meta.label("meta"), File.landed_at,
               File.discovered_at, File.version_id)
        .where(File.id.in_(list(file_ids)), File.state == FileState.LOADED.value,
               ~select(DocumentVersion.id).where(DocumentVersion.file_id == File.id).exists())
        .order_by(File.id)
    ).all()
    created = []
    for file in files:
        insert_document = pg_insert(Document).values(
            pipeline=file.pipeline, key=document_key(file.s3_key, file.meta or {}),
            project=_project(file.meta or {}))
        document_id = conn.execute(
            insert_document.on_conflict_do_update(index_elements=[Document.pipeline, Document.key],
                                                  set_={"deleted_at": None})
            .returning(Document.id)
        ).scalar_one()
        version_id = conn.execute(
            pg_insert(DocumentVersion)
            .values(document_id=document_id, file_id=file.id, landed_at=file.landed_at or file.discovered_at,
                    s3_version_id=file.version_id)
            .on_conflict_do_nothing(index_elements=[DocumentVersion.file_id])
            .returning(DocumentVersion.id)
        ).scalar()
        if version_id is not None:
            created.append(version_id)
    return created


def numbered_versions(document_ids: Sequence[int] | Select[Any] | None = None) -> Subquery:
    """`document_versions` (of `document_ids`, a list or a query of them; else all) with each version's
    `number` (1..n in LANDING_ORDER within its document) and the `previous_id` version before it (None for
    the first). Filter by documents here, not outside: the window then reads only their versions."""
    window = {"partition_by": DocumentVersion.document_id, "order_by": LANDING_ORDER}
    query = select(
        DocumentVersion,
        func.row_number().over(**window).label("number"),
        func.lag(DocumentVersion.id).over(**window).label("previous_id"),
    )
    if document_ids is not None:
        wanted = document_ids if isinstance(document_ids, Select) else list(document_ids)
        query = query.where(DocumentVersion.document_id.in_(wanted))
    return query.subquery("numbered_versions")


def _newest_versions_of_keys(pipeline: str, bucket: str, keys: Collection[str]) -> Select[Any]:
    """Per key: the newest version (in LANDING_ORDER) of the pipeline's files with that key in `bucket`."""
    return (
        select(DocumentVersion.id, DocumentVersion.deleted_at)
        .join(File, File.id == DocumentVersion.file_id)
        .join(Document, Document.id == DocumentVersion.document_id)
        .where(Document.pipeline == pipeline, File.s3_bucket == bucket, File.s3_key.in_(list(keys)))
        .distinct(File.s3_key)
        .order_by(File.s3_key, *(column.desc() for column in LANDING_ORDER))
    )


def mark_deleted(conn: Connection, pipeline: str, bucket: str, keys: Collection[str]) -> list[int]:
    """The landing no longer has these keys: the newest version of each is marked deleted (now), results
    kept (a purged version stays `purged`, with the time); a document whose latest version is deleted is
    deleted too. Returns the ids of the versions newly marked."""
    if not keys:
        return []
    newest = conn.execute(_newest_versions_of_keys(pipeline, bucket, keys)).all()
    ids = [row.id for row in newest if row.deleted_at is None]
    if not ids:
        return []
    purged = DocumentVersion.state == VersionState.PURGED.value
    documents = list(conn.scalars(
        update(DocumentVersion).where(DocumentVersion.id.in_(ids))
        .values(deleted_at=func.now(),
                state=case((purged, VersionState.PURGED.value), else_=VersionState.DELETED.value))
        .returning(DocumentVersion.document_id)))
    latest = (select(DocumentVersion.deleted_at).where(DocumentVersion.document_id == Document.id)
              .order_by(*(column.desc() for column in LANDING_ORDER)).limit(1).scalar_subquery())
    conn.execute(update(Document).where(Document.id.in_(documents), Document.deleted_at.is_(None),
                                        latest.is_not(None)).values(deleted_at=func.now()))
    return ids


def keys_with_live_versions(conn: Connection, pipeline: str, bucket: str, prefix: str,
                            landed_before: datetime) -> set[str]:
    """Keys under `prefix` of the pipeline's versions not marked deleted that landed before `landed_before`:
    what a full listing that began then must find (a later landing may be missing from it)."""
    return set(conn.scalars(
        select(File.s3_key).distinct()
        .join(DocumentVersion, DocumentVersion.file_id == File.id)
        .join(Document, Document.id == DocumentVersion.document_id)
        .where(Document.pipeline == pipeline, File.s3_bucket == bucket,
               File.s3_key.startswith(prefix, autoescape=True), DocumentVersion.deleted_at.is_(None),
               DocumentVersion.landed_at < landed_before)
    ))
