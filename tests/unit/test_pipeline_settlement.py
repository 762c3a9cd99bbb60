"""`decide_settlement`: what the wait's verdict, the manifest and the translation's deadline mean for a model
(issue 20, finding 3: only a passed deadline is a timeout)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aps_client import Manifest
from aps_pipeline.settle import Outcome, decide_settlement
from aps_results.registry import ModelRecord, ModelSnapshot, TranslationRecord

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
TIMEOUT = 3600.0


def snapshot(*, urn: str | None = "dXJu", files: tuple[int, ...] = (1,), submitted_ago: float | None = 60
             ) -> ModelSnapshot:
    model = ModelRecord(id=7, region="US", sha256="a" * 64, status="translating", reason=None,
                        bucket_key="b", output_profile="p" * 64, object_key="o.ifc", object_id=None,
                        urn=urn, upload_key=None, upload_state={}, loaded_at=None, created=False)
    translation = None if submitted_ago is None else TranslationRecord(
        id=3, model_id=7, attempt=1, status="submitted", run_id="r",
        job_submitted_at=NOW - timedelta(seconds=submitted_ago))
    return ModelSnapshot(model, translation, list(files), NOW)


def manifest(status: str) -> Manifest:
    return Manifest(urn="dXJu", status=status, progress="complete" if status != "inprogress" else "40%")


@pytest.mark.parametrize(("verdict", "status", "expected"), [
    ({"status": "success"}, "success", Outcome.LOAD),
    ({"status": "failed"}, "failed", Outcome.FAILED),
    ({"status": "timeout"}, "timeout", Outcome.FAILED),  # APS's own timeout is a failed translation
    ({"status": "deadline_exceeded", "reason": "late"}, "success", Outcome.LOAD),  # APS finished since
    ({"status": "deadline_exceeded", "reason": "late"}, "inprogress", Outcome.TIMEOUT),
    ({"status": "error", "reason": "No manifest after 120s"}, "inprogress", Outcome.WAIT_ENDED),
    (None, "inprogress", Outcome.WAIT_ENDED),
    (None, "success", Outcome.LOAD),
])
def test_the_manifest_then_the_deadline_decide(verdict: dict[str, Any] | None, status: str,
                                               expected: Outcome) -> None:
    assert decide_settlement(snapshot(), verdict, manifest(status), None, TIMEOUT).outcome is expected


def test_an_unfinished_translation_past_its_own_deadline_times_out_without_a_verdict() -> None:
    late = snapshot(submitted_ago=TIMEOUT + 1)
    assert decide_settlement(late, None, manifest("inprogress"), None, TIMEOUT).outcome is Outcome.TIMEOUT
    error = {"status": "error", "reason": "APSForbiddenError: 403"}
    assert decide_settlement(late, error, None, "APSForbiddenError: 403", TIMEOUT).outcome is Outcome.TIMEOUT


def test_an_early_end_names_the_real_reason() -> None:
    verdict = {"status": "error", "reason": "APSForbiddenError: 403 on a poll"}
    settlement = decide_settlement(snapshot(), verdict, None, "APSForbiddenError: 403", TIMEOUT)
    assert settlement.outcome is Outcome.WAIT_ENDED
    assert "APSForbiddenError: 403 on a poll" in settlement.reason
    no_verdict = decide_settlement(snapshot(), None, manifest("inprogress"), None, TIMEOUT)
    assert "the wait gave no verdict" in no_verdict.reason
    assert "APS says inprogress" in no_verdict.reason


def test_nothing_to_settle_and_nothing_uploaded() -> None:
    assert decide_settlement(snapshot(files=()), None, None, None, TIMEOUT).outcome is Outcome.NOTHING
    unsent = decide_settlement(snapshot(urn=None), None, None, None, TIMEOUT)
    assert unsent.outcome is Outcome.NOT_UPLOADED
    assert unsent.reason == "upload to APS or job submission failed"
