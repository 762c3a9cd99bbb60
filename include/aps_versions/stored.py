"""Stored element diffs: each version against the version before it, computed right after it loads.

    store_missing_diffs(engine, file_ids)   # the load step, after the files are loaded: a list of reports
    missing_diffs(conn, document_ids)       # the (previous, version) pairs that have no stored diff yet
    diff_versions(conn, from_model, to_model)  # the diff of two loaded models (aps_versions.diff)

A diff is stored per pair of versions (their ids, not their numbers), in `version_diffs` (the counts) and
`version_diff_items` (each added, removed or changed element; unchanged ones are only counted), so reading
one is a primary-key lookup. What is missing is derived, not queued: every pair of neighbours in landing
order whose versions both have results and that has no stored diff. So a version that lands between two
others gets its own diff and its successor's new one on its load, and a diff that failed (the database
went away mid-way) is made by the document's next load. A diff never fails a load: its error is logged and
reported, and the load stands.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import aliased

from aps_results.models import (
    DocumentVersion,
    File,
    Model,
    VersionDiff,
    VersionDiffItem,
    VersionState,
)
from aps_versions.diff import ElementDiff, diff_elements
from aps_versions.documents import numbered_versions
from aps_versions.elements import element_count, element_rows, elements_from_rows

logger = logging.getLogger(__name__)

_INSERT_CHUNK = 5000
_STREAM_ROWS = 10_000
#: The most elements (both versions together) a load diffs: beyond it the diff is not stored (and the API
#: refuses it), so a huge model's load never holds two models' elements in memory. bench/diff.py: 200,000
#: elements (two versions of 100,000) in about 3 s.
MAX_DIFF_ELEMENTS = 1_000_000


@dataclass(frozen=True)
class DiffPair:
    """Two neighbouring versions of a document, with the models holding their results."""

    document_id: int
    from_version_id: int
    to_version_id: int
    from_model_id: int
    to_model_id: int


def _with_results(version: Any, file: Any, model: Any) -> Any:
    return and_(version.state != VersionState.PURGED.value, model.loaded_at.is_not(None),
                file.model_id == model.id)


def missing_diffs(conn: Connection, document_ids: Sequence[int]) -> list[DiffPair]:
    """Neighbouring versions of the documents, both with results, whose diff is not stored, oldest first."""
    numbered = numbered_versions(document_ids)
    previous = aliased(DocumentVersion)
    to_file, from_file = aliased(File), aliased(File)
    to_model, from_model = aliased(Model), aliased(Model)
    stored = select(VersionDiff.id).where(VersionDiff.from_version_id == numbered.c.previous_id,
                                          VersionDiff.to_version_id == numbered.c.id).exists()
    rows = conn.execute(
        select(numbered.c.document_id, numbered.c.previous_id, numbered.c.id, from_model.id, to_model.id)
        .join(previous, previous.id == numbered.c.previous_id)
        .join(to_file, to_file.id == numbered.c.file_id)
        .join(from_file, from_file.id == previous.file_id)
        .join(to_model, _with_results(numbered.c, to_file, to_model))
        .join(from_model, _with_results(previous, from_file, from_model))
        .where(~stored)
        .order_by(numbered.c.document_id, numbered.c.number)
    ).all()
    return [DiffPair(*row) for row in rows]


def diff_versions(conn: Connection, from_model_id: int, to_model_id: int) -> ElementDiff:
    """The element diff between two loaded models (each read whole, its rows streamed from a server-side
    cursor: the staged matcher needs both sides' elements, not their rows)."""
    streamed = conn.execution_options(stream_results=True, yield_per=_STREAM_ROWS)
    before = elements_from_rows(streamed.execute(element_rows(from_model_id)))
    after = before if to_model_id == from_model_id else elements_from_rows(
        streamed.execute(element_rows(to_model_id)))
    return diff_elements(before, after)


def _item_rows(diff_id: int, diff: ElementDiff) -> list[dict[str, Any]]:
    return [
        {"diff_id": diff_id, "seq": seq, "change": item.change, "external_id": item.external_id,
         "previous_external_id": item.previous_external_id, "name": item.name, "category": item.category,
         "matched_by": item.matched_by,
         "properties": [{"category": p.category, "name": p.name, "before": p.before, "after": p.after}
                        for p in item.properties]}
        for seq, item in enumerate(diff.items, start=1)
    ]


def store_diff(conn: Connection, pair: DiffPair, diff: ElementDiff) -> int | None:
    """Store one diff with its items; None when another load stored the same pair first."""
    diff_id = conn.execute(
        pg_insert(VersionDiff)
        .values(document_id=pair.document_id, from_version_id=pair.from_version_id,
                to_version_id=pair.to_version_id, matched_by=dict(diff.matched_by), **diff.counts)
        .on_conflict_do_nothing(index_elements=[VersionDiff.from_version_id, VersionDiff.to_version_id])
        .returning(VersionDiff.id)
    ).scalar()
    if diff_id is None:
        return None
    rows = _item_rows(diff_id, diff)
    for start in range(0, len(rows), _INSERT_CHUNK):
        conn.execute(insert(VersionDiffItem), rows[start:start + _INSERT_CHUNK])
    return diff_id


def _documents_of(engine: Engine, file_ids: Sequence[int]) -> list[int]:
    with engine.connect() as conn:
        return list(conn.scalars(select(DocumentVersion.document_id).distinct()
                                 .where(DocumentVersion.file_id.in_(list(file_ids)))))


def store_missing_diffs(engine: Engine, file_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Compute and store every missing diff of the documents of `file_ids` (the files a load just loaded).

    One transaction per diff; a diff that fails is logged and reported, never raised: the load stands, and
    the document's next load makes it."""
    if not file_ids:
        return []
    reports: list[dict[str, Any]] = []
    try:
        documents = _documents_of(engine, file_ids)
        with engine.connect() as conn:
            pairs = missing_diffs(conn, documents)
    except Exception as exc:  # the database went away: the next load finds what is missing
        logger.warning("diffs of files %s not computed: %s: %s", list(file_ids), type(exc).__name__, exc)
        return [{"error": f"{type(exc).__name__}: {exc}"}]
    for pair in pairs:
        started = time.monotonic()
        try:
            with engine.connect() as conn:
                elements = conn.scalar(element_count(sorted({pair.from_model_id, pair.to_model_id}))) or 0
                if elements > MAX_DIFF_ELEMENTS:
                    logger.warning("diff of versions %d -> %d of document %d not computed: %d elements, more "
                                   "than %d", pair.from_version_id, pair.to_version_id, pair.document_id,
                                   elements, MAX_DIFF_ELEMENTS)
                    reports.append({"document_id": pair.document_id, "skipped": f"{elements} elements"})
                    continue
                diff = diff_versions(conn, pair.from_model_id, pair.to_model_id)
            with engine.begin() as conn:
                diff_id = store_diff(conn, pair, diff)
        except Exception as exc:
            logger.warning("diff of versions %d -> %d of document %d failed: %s: %s", pair.from_version_id,
                           pair.to_version_id, pair.document_id, type(exc).__name__, exc)
            reports.append({"document_id": pair.document_id, "error": f"{type(exc).__name__}: {exc}"})
            continue
        seconds = round(time.monotonic() - started, 3)
        logger.info("document %d: versions %d -> %d: %s in %.3f s", pair.document_id, pair.from_version_id,
                    pair.to_version_id, diff.counts, seconds)
        reports.append({"document_id": pair.document_id, "from_version_id": pair.from_version_id,
                        "to_version_id": pair.to_version_id, "diff_id": diff_id, **diff.counts,
                        "seconds": seconds})
    return reports
