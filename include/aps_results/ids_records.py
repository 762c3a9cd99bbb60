"""The rows of IDS checks (`ids_checks`, `ids_results`): written by the validation step, read by quarantine.

A check is replaced when the same run checks the same file again (a retried validation task), so each
(file, run) has one check. The API reads the same tables with its own async queries (aps_api.routers.ids).
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.orm import Session, defer

from aps_results.models import IdsCheck, IdsResult


def record_ids_check(
    conn: Connection,
    file_id: int,
    run_id: str,
    *,
    status: str,
    policy: str,
    reason: str | None,
    documents: Sequence[str],
    seconds: float | None = None,
    report_html: bytes | None = None,
    requirements: Sequence[Mapping[str, Any]] = (),
) -> int:
    """Store one file's IDS check for a run (replacing an earlier try of the same run); returns its id.

    `requirements` are aps_ids RequirementResult dicts (`ids` names the document).
    """
    conn.execute(delete(IdsCheck).where(IdsCheck.file_id == file_id, IdsCheck.run_id == run_id))
    check_id = conn.execute(
        insert(IdsCheck)
        .values(file_id=file_id, run_id=run_id, status=status, policy=policy, reason=reason,
                documents=list(documents), seconds=seconds,
                report_html_gz=gzip.compress(report_html) if report_html else None)
        .returning(IdsCheck.id)
    ).scalar_one()  # fmt: skip
    rows = [
        {"check_id": check_id, "document": r["ids"], "specification": r["specification"],
         "specification_index": r["specification_index"], "requirement": r["requirement"],
         "facet": r["facet"], "passed": r["passed"], "applicable": r["applicable"], "failed": r["failed"],
         "failures": [dict(f) for f in r["failures"]]}
        for r in requirements
    ]  # fmt: skip
    if rows:
        conn.execute(insert(IdsResult), rows)
    return check_id


@dataclass(frozen=True)
class StoredIdsCheck:
    status: str
    reason: str | None
    documents: list[str]
    failing: list[dict[str, Any]]  # the failing requirements with their elements
    report_html: bytes | None

    def summary(self) -> dict[str, Any]:
        """What a quarantine reason file carries."""
        return {"status": self.status, "reason": self.reason, "documents": self.documents,
                "failing_requirements": self.failing}  # fmt: skip


def ids_checks_of(
    session: Session, file_runs: Mapping[int, str | None], *, with_report: bool = True
) -> dict[int, StoredIdsCheck]:
    """The IDS check each file got in the given run (files without one are left out); the HTML reports are
    read only `with_report`."""
    if not file_runs:
        return {}
    query = select(IdsCheck).where(IdsCheck.file_id.in_(list(file_runs)))
    if not with_report:
        query = query.options(defer(IdsCheck.report_html_gz, raiseload=True))
    checks = {c.id: c for c in session.scalars(query) if c.run_id == file_runs[c.file_id]}
    failing: dict[int, list[dict[str, Any]]] = {}
    if checks:
        query = (select(IdsResult).where(IdsResult.check_id.in_(list(checks)), IdsResult.passed.is_(False))
                 .order_by(IdsResult.id))  # fmt: skip
        for r in session.scalars(query):
            failing.setdefault(r.check_id, []).append({
                "document": r.document, "specification": r.specification, "requirement": r.requirement,
                "facet": r.facet, "applicable": r.applicable, "failed": r.failed, "failures": r.failures,
            })  # fmt: skip
    return {
        c.file_id: StoredIdsCheck(
            c.status, c.reason, list(c.documents), failing.get(c.id, []),
            gzip.decompress(c.report_html_gz) if with_report and c.report_html_gz else None,
        )
        for c in checks.values()
    }
