"""A sidecar that lands after its file re-opens the file's metadata rejection (within a grace).

    found = late_sidecar_files(landing, engine, pipeline, sidecars)   # before discovery's claim
    registry.reopen_rejected_files(connection, pipeline.name, run_id, found)   # inside it

Producers should put the sidecar first (README, "Your first file"), but a file landing a moment before its
sidecar is common: its event run starts within a second, finds no metadata, and rejects it. Re-uploading the
same bytes gives the same ETag, so nothing would ever re-claim it. So a sidecar's arrival, seen as an event
(arrival: when the run sees it) or in a listing (arrival: its LastModified), re-opens its file when:

- the file's newest row is `rejected`, and the only check that failed in the run that rejected it is
  `metadata` (a file rejected for anything else stays rejected);
- the sidecar arrived no earlier than the file was discovered (less a little clock slack) and at most
  `sidecar_grace_seconds` after;
- the file is still the version that was rejected (one HEAD), and this sidecar version (its ETag) is not
  the one the file was judged with (`_sidecar_etag` in the stored metadata: discovery notes the sidecar it
  read, and a re-open the sidecar that re-opened it), so a bad sidecar is judged once, not on every run.

The file then goes back to `discovered` with the metadata read now, claimed by this run (the same row: its
history stays), and the later steps validate it as any other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select

from aps_landing import Landing
from aps_pipeline.boundary import FileFailure, guarded
from aps_pipeline.checks import CHECK_METADATA
from aps_pipeline.config import PipelineConfig
from aps_pipeline.metadata import SIDECAR_SUFFIX
from aps_results import registry
from aps_results.models import File, FileState, ValidationResult

logger = logging.getLogger(__name__)

SIDECAR_ETAG_KEY = "_sidecar_etag"  # the sidecar version whose arrival re-opened the file
CLOCK_SLACK = timedelta(seconds=2)  # S3's LastModified has whole seconds; the registry's clock is another
LOOKUP_CHUNK = 1000  # file keys looked up per query (a full listing names every sidecar ever landed)


@dataclass(frozen=True)
class LandedSidecar:
    key: str
    etag: str
    arrived: datetime


def _metadata_only_rejections(
    engine: Engine, pipeline: PipelineConfig, bucket: str, file_keys: list[str]
) -> list[Any]:
    """The newest row of each named file if it is rejected for its metadata alone."""
    with engine.connect() as connection:
        newest = (select(func.max(File.id)).where(File.pipeline == pipeline.name, File.s3_bucket == bucket,
                                                  File.s3_key.in_(file_keys))
                  .group_by(File.s3_key))
        rows = connection.execute(
            select(File.id, File.s3_key, File.etag, File.run_id, File.discovered_at, File.meta.label("meta"))
            .where(File.id.in_(newest), File.state == FileState.REJECTED.value)
        ).all()
        if not rows:
            return []
        failing: dict[int, set[str]] = {}
        run_of = {row.id: row.run_id for row in rows}
        for file_id, run, check in connection.execute(
            select(ValidationResult.file_id, ValidationResult.run_id, ValidationResult.check_name)
            .where(ValidationResult.file_id.in_(list(run_of)), ValidationResult.passed.is_(False))
        ):
            if run == run_of[file_id]:
                failing.setdefault(file_id, set()).add(check)
    return [row for row in rows if failing.get(row.id) == {CHECK_METADATA}]


# How discovery reads a file's metadata: (landing, key, the file's user metadata) -> the stored document.
ReadMetadata = Callable[[Landing, str, dict[str, str]], dict[str, Any]]


def late_sidecar_files(
    landing: Landing, engine: Engine, pipeline: PipelineConfig, sidecars: Iterable[LandedSidecar],
    read_metadata: ReadMetadata, run_is_active: Callable[[str], bool] = lambda run_id: False,
) -> list[registry.ReopenedFile]:
    """The files whose metadata rejection the landed `sidecars` re-open, with their metadata read now
    (`read_metadata`: discovery's own reader, passed in so that there is one)."""
    by_file = {s.key[: -len(SIDECAR_SUFFIX)]: s for s in sidecars if s.key.endswith(SIDECAR_SUFFIX)}
    if not by_file:
        return []
    grace = timedelta(seconds=pipeline.sidecar_grace_seconds)
    reopened: list[registry.ReopenedFile] = []
    keys = sorted(by_file)
    rows = [row for start in range(0, len(keys), LOOKUP_CHUNK)
            for row in _metadata_only_rejections(engine, pipeline, landing.location,
                                                 keys[start : start + LOOKUP_CHUNK])]
    for row in rows:
        sidecar = by_file[row.s3_key]
        if row.run_id is not None and run_is_active(row.run_id):
            continue  # the run that rejected it is still at work: its summary counts it; a later run re-opens
        if (row.meta or {}).get(SIDECAR_ETAG_KEY) == sidecar.etag:
            continue  # this sidecar version was judged already
        if not row.discovered_at - CLOCK_SLACK <= sidecar.arrived <= row.discovered_at + grace:
            continue
        outcome = guarded(lambda row=row: _current_metadata(landing, row, read_metadata),
                          what="sidecar re-read", subject=landing.url(row.s3_key))
        if isinstance(outcome, FileFailure) or outcome is None:
            continue  # the file changed (a new version is a new file) or cannot be read: it stays rejected
        reopened.append(registry.ReopenedFile(row.id, {**outcome, SIDECAR_ETAG_KEY: sidecar.etag}))
        logger.info("%s: its sidecar landed after it; its metadata rejection is re-opened",
                    landing.url(row.s3_key))
    return reopened


def _current_metadata(landing: Landing, row: Any, read_metadata: ReadMetadata) -> dict[str, Any] | None:
    """The file's metadata as discovery reads it, if the file is still the rejected version."""
    head = landing.head(row.s3_key)
    if head.etag != row.etag:
        return None
    return dict(read_metadata(landing, row.s3_key, dict(head.metadata)))
