"""The translation-poll verdict (aps_client.derivative.manifest_verdict) that the sensor and trigger share."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from aps_client import Manifest
from aps_client.derivative import (
    DEFAULT_FORMATS,
    ManifestPoll,
    PollState,
    PollVerdict,
    default_formats,
    manifest_verdict,
)
from aps_client.errors import APSError, APSNotFoundError, APSTransportError
from aps_client.models import FINISHED_STATUSES
from aps_client.transport import error_from_response

URN = "dXJuOmE"
GRACE = 120.0


def answer(status: int, body: dict[str, Any] | None = None) -> APSError:
    """The typed error the client raises for an APS answer (through the client's own mapping)."""
    request = httpx.Request("GET", f"https://developer.api.autodesk.com/modelderivative/v2/designdata/{URN}/manifest")
    return error_from_response(httpx.Response(status, json=body or {"diagnostic": "x"}, request=request))


def manifest(status: str, progress: str = "", messages: list[dict[str, Any]] | None = None) -> Manifest:
    derivatives = [{"outputType": "svf2", "status": status, "messages": messages or []}]
    return Manifest.model_validate({"urn": URN, "status": status, "progress": progress,
                                    "derivatives": derivatives})


FAILURE = [{"type": "error", "code": "TranslationWorker-InternalFailure",
            "message": "Unrecoverable exit code"}]

# (what the GET gave, seconds since the first 404 of the poll, expected state, expected reason fragment)
CASES: list[tuple[str, Manifest | APSError, float | None, PollState, str]] = [
    ("404 just after the POST", answer(404), 0.0, PollState.PENDING, "not found yet"),
    ("404 within the grace", answer(404), GRACE - 1, PollState.PENDING, "not found yet"),
    ("404 after the grace", answer(404), GRACE + 1, PollState.MISSING, "was the job submitted?"),
    ("429 that outlasted the retries", answer(429), None, PollState.PENDING, "transient"),
    ("503 that outlasted the retries", answer(503), None, PollState.PENDING, "transient"),
    ("no answer at all", APSTransportError("no answer from APS: ConnectError"), None, PollState.PENDING,
     "transient"),
    ("401 (bad credentials)", answer(401), None, PollState.ERROR, "APSAuthError"),
    ("403 (no permission)", answer(403), None, PollState.ERROR, "APSForbiddenError"),
    ("501 (not retryable)", answer(501), None, PollState.ERROR, "APSServerError"),
    ("400 (bad request)", answer(400), None, PollState.ERROR, "APSError"),
    ("pending", manifest("pending", "0% complete"), None, PollState.PENDING, ""),
    ("in progress", manifest("inprogress", "40% complete"), None, PollState.PENDING, ""),
    ("success", manifest("success", "complete"), None, PollState.DONE, ""),
    ("failed", manifest("failed", "complete", FAILURE), None, PollState.FAILED, "'failed'"),
    ("timeout", manifest("timeout", "complete"), None, PollState.FAILED, "'timeout'"),
]


@pytest.mark.parametrize(("outcome", "since_first_404", "state", "reason"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_verdict_of_one_poll(outcome: Manifest | APSError, since_first_404: float | None, state: PollState,
                             reason: str) -> None:
    now = 1000.0
    poll = ManifestPoll(URN, not_found_grace=GRACE)
    if since_first_404 is not None:
        poll.first_not_found = now - since_first_404
    verdict = manifest_verdict(poll, outcome, now)
    assert verdict.state is state
    assert reason in verdict.reason
    assert verdict.finished is (state is not PollState.PENDING)
    if isinstance(outcome, Manifest):
        assert (verdict.status, verdict.progress) == (outcome.status, outcome.progress)
    else:
        assert verdict.status is None
    if isinstance(outcome, APSError) and not isinstance(outcome, APSNotFoundError):
        assert verdict.error is not None
        assert type(outcome).__name__ in verdict.error
    if state is PollState.MISSING:
        assert URN in verdict.reason


def test_every_finished_status_ends_the_wait_and_nothing_else_does() -> None:
    for status in ("pending", "inprogress", "success", "failed", "timeout", "something-new"):
        verdict = manifest_verdict(ManifestPoll(URN), manifest(status), 0.0)
        assert verdict.finished is (status in FINISHED_STATUSES), status


def test_failed_verdict_carries_aps_messages() -> None:
    verdict = manifest_verdict(ManifestPoll(URN), manifest("failed", "complete", FAILURE), 0.0)
    assert verdict.messages == ("error TranslationWorker-InternalFailure: Unrecoverable exit code",)


def test_verdict_messages_are_bounded() -> None:
    many = [{"type": "warning", "code": f"W{i}", "message": "y" * 1000} for i in range(30)]
    verdict = manifest_verdict(ManifestPoll(URN), manifest("success", "complete", many), 0.0)
    assert len(verdict.messages) == 11
    assert all(len(line) <= 300 for line in verdict.messages)
    assert verdict.messages[-1] == "... and 20 more messages"


def test_the_404_clock_starts_at_the_first_404_and_a_manifest_resets_it() -> None:
    poll = ManifestPoll(URN, not_found_grace=10)
    assert manifest_verdict(poll, answer(404), 100.0).state is PollState.PENDING
    assert poll.first_not_found == 100.0
    assert manifest_verdict(poll, answer(404), 105.0).state is PollState.PENDING
    assert poll.first_not_found == 100.0  # still the first one
    assert manifest_verdict(poll, manifest("pending"), 106.0).state is PollState.PENDING
    assert poll.first_not_found is None
    # A new run of 404s gets a full grace of its own.
    assert manifest_verdict(poll, answer(404), 111.0).state is PollState.PENDING
    assert manifest_verdict(poll, answer(404), 120.0).state is PollState.PENDING
    assert manifest_verdict(poll, answer(404), 121.5).state is PollState.MISSING


def test_changed_marks_a_new_status_or_progress_and_the_poll_remembers_the_last() -> None:
    poll = ManifestPoll(URN)
    seen = [manifest_verdict(poll, manifest(status, progress), 0.0).changed
            for status, progress in [("pending", ""), ("pending", ""), ("inprogress", "10% complete"),
                                     ("inprogress", "10% complete"), ("inprogress", "50% complete")]]
    assert seen == [True, False, True, False, True]
    assert (poll.last_status, poll.last_progress) == ("inprogress", "50% complete")
    manifest_verdict(poll, answer(503), 0.0)  # an error leaves the last manifest seen as it was
    assert (poll.last_status, poll.last_progress) == ("inprogress", "50% complete")


def test_verdict_is_a_small_plain_value() -> None:
    verdict = manifest_verdict(ManifestPoll(URN), manifest("failed", "complete", FAILURE), 0.0)
    assert isinstance(verdict, PollVerdict)
    with pytest.raises(AttributeError):
        verdict.state = PollState.DONE  # type: ignore[misc]
    assert all(isinstance(value, str | tuple | bool | None) for value in vars(verdict).values())


def test_default_formats_are_one_definition_handed_out_as_copies() -> None:
    formats = default_formats()
    assert formats == [{"type": "svf2", "views": ["2d", "3d"]}, {"type": "thumbnail"}]
    formats[0]["views"].append("4d")
    assert default_formats()[0]["views"] == ["2d", "3d"]
    assert DEFAULT_FORMATS[0]["views"] == ["2d", "3d"]
