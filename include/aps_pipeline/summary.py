"""The run's last step: count its files per terminal state, store the summary, fail loudly on lost files.

    result = summarize_run(engine, pipeline_name, run_id, started_at=None, details=None)
    result["line"]   # "summary: discovered=N loaded=L rejected=R failed=F lost=X"

Every file a run claimed must end loaded, rejected or failed. The summary row is written first (so the
counts are there to look at either way); then, if any file has no terminal state, FilesWithoutTerminalState
lists them (id, key, state) and the task fails.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from aps_results import registry

logger = logging.getLogger(__name__)

LISTED_LOST_FILES = 20


class FilesWithoutTerminalState(RuntimeError):
    """Some files of the run are neither loaded, rejected nor failed."""


def summarize_run(
    engine: Engine,
    pipeline: str,
    run_id: str,
    *,
    started_at: datetime | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the run summary and return its counts; raise FilesWithoutTerminalState if any file is lost."""
    with engine.begin() as connection:
        counts = registry.write_run_summary(
            connection, pipeline, run_id, started_at=started_at, details=details
        )
        lost = registry.run_files(connection, pipeline, run_id, registry.UNFINISHED_FILE_STATES,
                                  limit=LISTED_LOST_FILES)
    line = counts.line()
    logger.info("%s %s", pipeline, line)
    if counts.lost:
        listed = ", ".join(f"#{f.id} {f.s3_key!r} ({f.state})" for f in lost)
        more = f" and {counts.lost - len(lost)} more" if counts.lost > len(lost) else ""
        raise FilesWithoutTerminalState(
            f"{counts.lost} files of run {run_id} have no terminal state: {listed}{more} ({line})"
        )
    return {"run_id": run_id, "line": line, **counts.__dict__}
