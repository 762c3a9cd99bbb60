"""The IDS check of the validation step: IFC files that passed every other check are checked against the
pipeline's IDS documents (buildingSMART Information Delivery Specification) before a translation is spent.

    gate = IdsGate.for_pipeline(landing, pipeline)       # None when the pipeline names no IDS
    outcome = gate.apply(landing, engine, run_id, row, outcome)   # per file, in validation's reader threads

The documents are `ids` (for every IFC file) and `ids_per_project` (more for the files whose metadata names
that project). They are read once per step (paths, relative ones from the pipelines file's folder, or S3
URIs in the landing's bucket, read through the landing) and validated: a missing or invalid IDS fails the step
before any file is touched (it is configuration, not the file's fault). Each IFC file is read (the
validated version, pinned) into a temporary file and checked by aps_ids in a worker process, bounded by
`ids_timeout` and `ids_memory_limit`; as validation reads `read_concurrency` files at a time, that many
workers run at most. The verdict, per specification and requirement, is stored in `ids_checks` /
`ids_results`; the `ids` check result says what the policy made of it: with `on_ids_failure: reject` a
failing or unfinished check rejects the file (reason `ids: ...`), with `warn` the file goes on and the
failures stay on record. Files of other formats pass the check as skipped, and their record says why.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from aps_ids import IdsDocument, IdsDocumentError, IdsVerdict, Limits, check_ifc
from aps_landing import Landing, LandingError
from aps_pipeline.checks import CheckResult, extension_of, failed, passed
from aps_pipeline.config import PipelineConfig, pipelines_file
from aps_results.ids_records import record_ids_check
from aps_results.models import File, IdsCheckStatus

logger = logging.getLogger(__name__)

CHECK_IDS = "ids"
IDS_EXTENSIONS = frozenset({"ifc"})  # IDS describes IFC content; other formats are skipped
COPY_CHUNK = 1024 * 1024


def _read_document(landing: Landing, source: str) -> IdsDocument:
    if source.startswith("s3://"):
        _bucket, _, key = source[len("s3://"):].partition("/")
        if landing.url(key) != source:
            raise IdsDocumentError(f"{source}: an S3 IDS must lie in the landing's bucket "
                                   f"({landing.url('')}), which is read through the landing's connection")
        try:
            stream = landing.read_range(key)
            try:
                return IdsDocument(source, stream.read())
            finally:
                stream.close()
        except LandingError as exc:
            raise IdsDocumentError(f"{source}: cannot read the IDS file: {exc}") from None
    path = Path(source)
    return IdsDocument.from_path(path if path.is_absolute() else pipelines_file().parent / path)


@dataclass(frozen=True)
class IdsGate:
    documents: dict[str, IdsDocument]  # every document the pipeline names, by its source
    everyone: tuple[str, ...]  # `ids`: the sources every IFC file is checked against
    per_project: dict[str, tuple[str, ...]]  # `ids_per_project`: more sources for a project's files
    policy: str  # reject | warn
    limits: Limits

    @classmethod
    def for_pipeline(cls, landing: Landing, pipeline: PipelineConfig) -> IdsGate | None:
        """The pipeline's gate, its documents read and validated (IdsDocumentError if one is not)."""
        sources = [*pipeline.ids, *(s for listed in pipeline.ids_per_project.values() for s in listed)]
        if not sources:
            return None
        documents = {source: _read_document(landing, source) for source in dict.fromkeys(sources)}
        for document in documents.values():
            document.parse()
        limits = Limits(seconds=pipeline.ids_timeout, memory_bytes=int(pipeline.ids_memory_limit))
        per_project = {project: tuple(listed) for project, listed in pipeline.ids_per_project.items()}
        return cls(documents, tuple(pipeline.ids), per_project, pipeline.on_ids_failure, limits)

    def documents_for(self, project: str | None) -> list[IdsDocument]:
        """The documents a file of `project` (its metadata's) is checked against, each once."""
        sources = dict.fromkeys([*self.everyone, *self.per_project.get(project or "", ())])
        return [self.documents[source] for source in sources]

    def apply(self, landing: Landing, engine: Engine, run_id: str, row: File, outcome: Any) -> Any:
        """validation's (results, digests, metadata) with the `ids` check added, once every other passed."""
        results, digests, metadata = outcome
        if digests is None or not all(r.passed for r in results):
            return outcome
        project = (metadata or {}).get("project")
        documents = self.documents_for(project)
        names = [d.name for d in documents]
        skip = None
        if extension_of(row.s3_key) not in IDS_EXTENSIONS:
            skip = f"IDS checks apply to IFC files, not '.{extension_of(row.s3_key)}'"
        elif not documents:
            skip = f"no IDS for project {project!r} (ids_per_project) and none for every file (ids)"
        if skip is not None:
            with engine.begin() as connection:
                record_ids_check(connection, row.id, run_id, status=IdsCheckStatus.SKIPPED.value,
                                 policy=self.policy, reason=skip, documents=names)
            skipped = passed(CHECK_IDS, f"skipped: {skip}", status=IdsCheckStatus.SKIPPED.value)
            return [*results, skipped], digests, metadata
        verdict = self._check(landing, row, documents)
        with engine.begin() as connection:
            record_ids_check(
                connection, row.id, run_id, status=verdict.status, policy=self.policy,
                reason=verdict.reason or None, documents=names, seconds=verdict.seconds,
                report_html=verdict.report_html, requirements=[r.as_dict() for r in verdict.requirements],
            )  # fmt: skip
        logger.info("IDS check of %s: %s in %.1f s %s", landing.url(row.s3_key), verdict.status,
                    verdict.seconds, verdict.reason)
        return [*results, self.judge(verdict)], digests, metadata

    def _check(self, landing: Landing, row: File, documents: list[IdsDocument]) -> IdsVerdict:
        with tempfile.TemporaryDirectory(prefix="aps-ids-file-") as folder:
            local = Path(folder) / "model.ifc"
            stream = landing.read_range(row.s3_key, etag=row.etag, version_id=row.version_id)
            try:
                with local.open("wb") as target:
                    shutil.copyfileobj(stream, target, COPY_CHUNK)
            finally:
                stream.close()
            return check_ifc(local, documents, self.limits, report_html=True)

    def judge(self, verdict: IdsVerdict) -> CheckResult:
        """What the policy makes of a verdict: the file's `ids` check result."""
        details = {"status": verdict.status, "policy": self.policy, "seconds": round(verdict.seconds, 3),
                   "failing_requirements": len(verdict.failing)}  # fmt: skip
        if verdict.passed:
            return passed(CHECK_IDS, **details)
        if self.policy == "warn":
            return passed(CHECK_IDS, f"warn: {verdict.reason}", **details)
        return failed(CHECK_IDS, verdict.reason, **details)
