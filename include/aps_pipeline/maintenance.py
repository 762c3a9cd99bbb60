"""The daily maintenance of one pipeline and of the results database, Airflow-free.

    purge_quarantine(landing, pipeline, now)    quarantine copies and reason files past `quarantine_days`
    purge_history(engine, pipeline, now)        run summaries and validation rows past `history_days`, and
                                                purge_versions: results of versions past `keep_versions`
    delete_derivatives(aps, engine, pipeline)   with `delete_derivatives`: the APS manifest and OSS object of
                                                each model no live document version needs
    back_up_results(engine, backup)             a verified dump of the results database, the newest N kept
    forget_webhook_deliveries(engine, now)      APS callbacks' delivery ids past WEBHOOK_DEDUP_DAYS

Each returns a small JSON-able report of what it removed or wrote, so the maintenance DAG can log and return
it. The pipeline deletes only what it wrote itself: landed files are never touched, and a quarantine copy is
removed only under the quarantine prefix. A removed copy's key stays on its file's row (the file stays
rejected; the run page's link to the copy then answers "not found").
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from aps_client import APSClient
from aps_client.errors import APSError, APSNotFoundError
from aps_landing import Landing, LandingError
from aps_pipeline.config import BackupConfig, PipelineConfig
from aps_results import backup, derivatives, retention

logger = logging.getLogger(__name__)
# APS retries a failed webhook delivery for up to 48 hours; after a week a delivery id cannot come again.
WEBHOOK_DEDUP_DAYS = 7


def purge_quarantine(landing: Landing, pipeline: PipelineConfig, now: datetime) -> dict[str, Any]:
    """Delete objects under the quarantine prefix last modified more than `quarantine_days` before `now`."""
    days = pipeline.retention.quarantine_days
    if days is None:
        return {"quarantine_removed": 0, "kept_for_ever": True}
    cutoff = now - timedelta(days=days)
    removed, errors = 0, 0
    for item in landing.list(pipeline.landing.quarantine_prefix):
        if item.last_modified is None or item.last_modified >= cutoff:
            continue
        try:
            landing.delete(item.key)
        except LandingError as exc:  # one refused delete never stops the rest; the next day tries again
            errors += 1
            logger.warning("could not remove %s: %s", landing.url(item.key), exc)
            continue
        removed += 1
    logger.info("%s: removed %d quarantine objects older than %d days (%d refused)", pipeline.name, removed,
                days, errors)
    return {"quarantine_removed": removed, "quarantine_errors": errors, "cutoff": cutoff.isoformat()}


def purge_history(engine: Engine, pipeline: PipelineConfig, now: datetime) -> dict[str, Any]:
    """Delete the pipeline's run summaries and validation rows older than `history_days`, and the results of
    its documents' versions past `keep_versions`."""
    report = purge_versions(engine, pipeline)
    days = pipeline.retention.history_days
    if days is None:
        return {"history_removed": {}, "kept_for_ever": True, **report}
    removed = retention.purge_history(engine, pipeline.name, now - timedelta(days=days))
    logger.info("%s: removed %s (older than %d days)", pipeline.name, removed, days)
    return {"history_removed": removed, **report}


def purge_versions(engine: Engine, pipeline: PipelineConfig) -> dict[str, Any]:
    """Purge the results of each document's versions older than the newest `keep_versions`."""
    keep = pipeline.retention.keep_versions
    if keep is None:
        return {"versions_purged": 0, "all_versions_kept": True}
    report = retention.purge_versions(engine, pipeline.name, keep)
    logger.info("%s: keeping %d versions per document: %s", pipeline.name, keep, report)
    return report


def delete_derivatives(aps: APSClient, engine: Engine, pipeline: PipelineConfig) -> dict[str, Any]:
    """Delete at APS the manifest and OSS object of each model no live version needs, then record it."""
    if not pipeline.retention.delete_derivatives:
        return {"derivatives_deleted": [], "derivatives_kept": True}
    candidates = derivatives.models_no_live_version_needs(derivatives.read_model_uses(engine, pipeline.name))
    return delete_unneeded_derivatives(aps, engine, pipeline, candidates)


def delete_unneeded_derivatives(aps: APSClient, engine: Engine, pipeline: PipelineConfig,
                                candidates: list[derivatives.ModelAtAPS]) -> dict[str, Any]:
    """The snapshot's candidates one by one, each decided again under its row lock, deleted at APS and
    recorded in that one transaction (a file linking to the model meanwhile waits for the commit)."""
    deleted: list[int] = []
    still_needed: list[int] = []
    errors: dict[str, str] = {}  # model id (a string: the report travels as JSON) -> what APS answered
    for candidate in candidates:
        try:
            with engine.begin() as conn:
                model = derivatives.lock_if_still_unneeded(conn, pipeline.name, candidate.id)
                if model is None:
                    still_needed.append(candidate.id)
                    continue
                _delete_at_aps(aps, model)
                derivatives.record_derivatives_deleted(conn, model.id)
        except APSError as exc:  # one model refused never stops the others; the next run tries it again
            errors[str(candidate.id)] = str(exc)
            logger.warning("model %d: could not delete its APS derivatives: %s", candidate.id, exc)
            continue
        deleted.append(candidate.id)
    logger.info("%s: deleted the APS manifest and OSS object of models %s (%d refused, %s needed again)",
                pipeline.name, deleted, len(errors), still_needed)
    return {"derivatives_deleted": deleted, "derivatives_errors": errors,
            "derivatives_still_needed": still_needed}


def _delete_at_aps(aps: APSClient, model: derivatives.ModelAtAPS) -> None:
    """The manifest (with every derivative), then the source object; either already gone (404) is fine."""
    if model.urn:
        try:
            aps.derivative.delete_manifest(model.urn, region=model.region)
        except APSNotFoundError:
            logger.info("model %d: manifest of %s already gone", model.id, model.urn)
    if model.bucket_key and model.object_key:
        try:
            aps.oss.delete_object(model.bucket_key, model.object_key, region=model.region)
        except APSNotFoundError:
            logger.info("model %d: OSS object %s/%s already gone", model.id, model.bucket_key,
                        model.object_key)


def back_up_results(engine: Engine, config: BackupConfig) -> dict[str, Any]:
    """Dump the results database into `config.folder` with its manifest; keep the newest `config.keep`."""
    folder, manifest = backup.backup(engine, config.folder)
    pruned = backup.prune(config.folder, config.keep)
    rows = sum(table.rows for table in manifest.tables.values())
    logger.info("backup %s: %d tables, %d rows, %d bytes; removed %d older backups", folder,
                len(manifest.tables), rows, manifest.dump_bytes, len(pruned))
    return {"backup": str(folder), "rows": rows, "bytes": manifest.dump_bytes,
            "removed": [str(path) for path in pruned]}


def forget_webhook_deliveries(engine: Engine, now: datetime) -> dict[str, Any]:
    """Forget the delivery ids of APS callbacks older than WEBHOOK_DEDUP_DAYS (deduplication needs them only
    while APS may still send the delivery again)."""
    cutoff = now - timedelta(days=WEBHOOK_DEDUP_DAYS)
    removed = retention.forget_webhook_deliveries(engine, cutoff)
    logger.info("forgot %d webhook deliveries received before %s", removed, cutoff.isoformat())
    return {"webhook_deliveries_removed": removed, "cutoff": cutoff.isoformat()}
