"""What the results database forgets with time: run summaries and validation rows past a pipeline's retention.

    purge_history(engine, pipeline, before) -> rows removed per table (run_summaries, validation_runs,
                                               validation_results)

Files, models and their results are never removed here: a file's terminal state and reason outlive the rows
that explained how it got there. Validation results are removed only for files that reached a terminal state
(a file still in flight may need them), and only for the pipeline named.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, delete, select

from aps_results.models import TERMINAL_FILE_STATES, File, RunSummary, ValidationResult, ValidationRun

_TERMINAL = sorted(state.value for state in TERMINAL_FILE_STATES)


def purge_history(engine: Engine, pipeline: str, before: datetime) -> dict[str, int]:
    """Delete the pipeline's run summaries and validation rows written before `before`, in one transaction."""
    finished_files = select(File.id).where(File.pipeline == pipeline, File.state.in_(_TERMINAL))
    statements = {
        "run_summaries": delete(RunSummary).where(RunSummary.pipeline == pipeline,
                                                  RunSummary.finished_at < before),
        "validation_runs": delete(ValidationRun).where(ValidationRun.pipeline == pipeline,
                                                       ValidationRun.created_at < before),
        "validation_results": delete(ValidationResult).where(ValidationResult.created_at < before,
                                                             ValidationResult.file_id.in_(finished_files)),
    }
    with engine.begin() as connection:
        return {name: connection.execute(statement).rowcount for name, statement in statements.items()}
