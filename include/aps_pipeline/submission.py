"""Between the upload and the wait: persist what APS gave us before the sensor defers.

The provider's operators upload the file and POST the translation job; this step writes the URN, the OSS
object and a new translation attempt to the results database in one transaction, and moves the model's files
to `translating`. A triggerer restart or a retried sensor then finds the job recorded and never submits it
again; a crashed run leaves the model `translating`, which the next run waits on instead of re-translating
(the start-translation operator finds the job in the manifest and does not POST it again, and the attempt
recorded for it here is reused rather than counted twice).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine

from aps_client.models import FINISHED_STATUSES
from aps_results import registry
from aps_results.models import FileState, ModelStatus

logger = logging.getLogger(__name__)


def record_submission(
    engine: Engine,
    model_id: int,
    run_id: str,
    *,
    upload: Mapping[str, Any],
    urn: str,
    file_ids: Sequence[int] = (),
    output_formats: Sequence[str] = (),
    forced: bool = False,
) -> dict[str, Any]:
    """Store the uploaded object and the submitted job of `model_id`; returns {model_id, urn, attempt}."""
    with engine.begin() as connection:
        registry.update_model(connection, model_id, object_id=upload.get("object_id"), urn=urn,
                              bucket_key=upload.get("bucket_key"), object_key=upload.get("object_key"))
        latest = registry.latest_translation(connection, model_id)
        if latest is not None and not forced and latest.status not in FINISHED_STATUSES:
            translation = latest  # the job an earlier (crashed) run submitted: still the one APS works on
            registry.set_model_status(connection, model_id, ModelStatus.TRANSLATING, run_id=run_id)
        else:
            registry.set_model_status(connection, model_id, ModelStatus.UPLOADED, run_id=run_id)
            translation = registry.start_translation(connection, model_id, run_id=run_id,
                                                     output_formats=output_formats, forced=forced)
        if file_ids:
            registry.set_file_state(connection, list(file_ids), FileState.TRANSLATING)
    logger.info("model %d: %s uploaded, translation attempt %d submitted", model_id, urn, translation.attempt)
    return {"model_id": model_id, "urn": urn, "attempt": translation.attempt}
