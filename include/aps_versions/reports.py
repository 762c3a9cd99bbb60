"""What people see of versions: a file's version and its diff against the version before it (the run page,
notifications), and a stored diff's elements (the run page's diff page).

    file_versions(conn, file_ids)               {file_id: FileVersion}
    run_versions(conn, pipeline, run_id)        the FileVersions of the files a run loaded, by key
    stored_diff(conn, pipeline, document_id, to, limit)   a document's stored diff into version `to`
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, select
from sqlalchemy.orm import aliased

from aps_results.models import Document, DocumentVersion, File, FileState, VersionDiff, VersionDiffItem
from aps_versions.documents import numbered_versions

_COUNTS = ("added", "removed", "changed", "unchanged")


@dataclass(frozen=True)
class FileVersion:
    """One file as a version of its document, with its diff against the version before it when stored."""

    file_id: int
    document_id: int
    document_key: str
    number: int
    versions: int  # the document's versions now
    state: str
    deleted_at: datetime | None
    previous: int | None  # the number of the version before it
    counts: dict[str, int] | None  # its stored diff against `previous`: added, removed, changed, unchanged

    @property
    def elements_changed(self) -> int:
        """Elements added, removed or changed since the version before (0 without a stored diff)."""
        return sum(self.counts[name] for name in ("added", "removed", "changed")) if self.counts else 0


def file_versions(conn: Connection, file_ids: Sequence[int]) -> dict[int, FileVersion]:
    """The versions the files are (files that are none, not yet loaded or loaded before 0009, are absent)."""
    if not file_ids:
        return {}
    documents = select(DocumentVersion.document_id).where(DocumentVersion.file_id.in_(list(file_ids)))
    numbered = numbered_versions(documents)
    ranked = select(numbered, func.count().over(partition_by=numbered.c.document_id).label("versions")) \
        .subquery()
    previous = aliased(ranked)
    rows = conn.execute(
        select(ranked.c.file_id, ranked.c.document_id, Document.key, ranked.c.number, ranked.c.versions,
               ranked.c.state, ranked.c.deleted_at, previous.c.number.label("previous"),
               *(getattr(VersionDiff, name) for name in _COUNTS), VersionDiff.id.label("diff_id"))
        .join(Document, Document.id == ranked.c.document_id)
        .outerjoin(previous, previous.c.id == ranked.c.previous_id)
        .outerjoin(VersionDiff, and_(VersionDiff.from_version_id == ranked.c.previous_id,
                                     VersionDiff.to_version_id == ranked.c.id))
        .where(ranked.c.file_id.in_(list(file_ids)))
    ).all()
    return {
        row.file_id: FileVersion(
            row.file_id, row.document_id, row.key, row.number, row.versions, row.state, row.deleted_at,
            row.previous, {name: getattr(row, name) for name in _COUNTS} if row.diff_id is not None else None)
        for row in rows
    }


def run_versions(conn: Connection, pipeline: str, run_id: str) -> list[FileVersion]:
    """The versions the run's loaded files are, by document key."""
    loaded = conn.scalars(select(File.id).where(File.pipeline == pipeline, File.run_id == run_id,
                                                File.state == FileState.LOADED.value)).all()
    return sorted(file_versions(conn, loaded).values(), key=lambda v: (v.document_key, v.number))


@dataclass(frozen=True)
class StoredDiffView:
    document_key: str
    older: int
    newer: int
    counts: dict[str, int]
    items: list[dict[str, Any]] = field(default_factory=list)  # the first `limit`, changed ones first


def stored_diff(conn: Connection, pipeline: str, document_id: int, to: int,
                limit: int = 1000) -> StoredDiffView | None:
    """The pipeline's document's stored diff from the version before `to` into `to`; None if not stored."""
    numbered = numbered_versions([document_id])
    row = conn.execute(
        select(Document.key, numbered.c.number, VersionDiff.id, *(getattr(VersionDiff, n) for n in _COUNTS))
        .join(Document, Document.id == numbered.c.document_id)
        .join(VersionDiff, and_(VersionDiff.from_version_id == numbered.c.previous_id,
                                VersionDiff.to_version_id == numbered.c.id))
        .where(Document.pipeline == pipeline, numbered.c.number == to)
    ).first()
    if row is None:
        return None
    items = conn.execute(
        select(VersionDiffItem.change, VersionDiffItem.external_id, VersionDiffItem.previous_external_id,
               VersionDiffItem.name, VersionDiffItem.category, VersionDiffItem.matched_by,
               VersionDiffItem.properties)
        .where(VersionDiffItem.diff_id == row.id).order_by(VersionDiffItem.seq).limit(limit)
    ).all()
    return StoredDiffView(row.key, to - 1, to, {name: getattr(row, name) for name in _COUNTS},
                          [dict(item._mapping) for item in items])
