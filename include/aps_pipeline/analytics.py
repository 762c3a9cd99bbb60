"""The load step's analytics export: the document versions a batch just loaded, as Parquet.

    export_loaded(engine, dest, file_ids, s3_client=None) -> {"exported": [...], "failed": {...}}

Runs after the batch's loads committed (the versions exist then: aps_versions registers them as their files
become loaded). One version's failure (the destination refused a file) does not stop the others: it is
reported, and the results stay loaded; `aps-db export DEST` exports again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, select

from aps_results.export import export_version, open_sink
from aps_results.models import DocumentVersion, VersionState

logger = logging.getLogger(__name__)


def export_loaded(engine: Engine, dest: str, file_ids: Sequence[int], s3_client: Any = None
                  ) -> dict[str, Any]:
    """Export the document versions of these (loaded) files to `dest`."""
    if not file_ids:
        return {"exported": [], "failed": {}}
    with engine.connect() as conn:
        version_ids = list(conn.execute(
            select(DocumentVersion.id).where(DocumentVersion.file_id.in_(list(file_ids)),
                                             DocumentVersion.state != VersionState.PURGED.value)
            .order_by(DocumentVersion.id)).scalars())
    sink = open_sink(dest, s3_client=s3_client)
    exported: list[int] = []
    failed: dict[int, str] = {}
    for version_id in version_ids:
        try:
            done = export_version(engine, version_id, sink)
        except Exception as exc:  # one version's trouble is its own; the others still go out
            failed[version_id] = f"{type(exc).__name__}: {exc}"
            logger.error("document version %s: export to %s failed: %s", version_id, dest, failed[version_id])
            continue
        exported.append(version_id)
        logger.info("document version %s (model %s): exported %s", version_id, done.model_id,
                    ", ".join(f"{name} {rows} rows" for name, rows in done.rows.items()))
    return {"exported": exported, "failed": failed}
