"""The per-file error boundary (aps_pipeline.boundary): what is a file's failure, what crosses it, and the
reasons it records."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DataError, OperationalError

from aps_pipeline.boundary import (
    MAX_REASON_CHARS,
    FileFailure,
    SharedInfrastructureError,
    describe,
    guarded,
    next_attempt,
    storable_text,
)


class _Hostile(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message for you")


def _raise(error: BaseException) -> None:
    raise error


@pytest.mark.parametrize("error", [RecursionError("deep"), ValueError("4301 digits"), _Hostile(),
                                   DataError("INSERT", {}, Exception("NUL in text"))],
                         ids=["recursion", "value", "hostile-str", "value-postgresql-refuses"])
def test_any_exception_of_one_file_becomes_its_failure(error: BaseException) -> None:
    outcome = guarded(lambda: _raise(error), what="validation", subject="s3://b/k")
    assert isinstance(outcome, FileFailure)
    assert outcome.reason.startswith(f"validation: {type(error).__name__}")


@pytest.mark.parametrize("error", [SharedInfrastructureError("listing down"), MemoryError(),
                                   OperationalError("SELECT", {}, Exception("connection refused")),
                                   KeyboardInterrupt()])
def test_what_every_file_needs_crosses_the_boundary(error: BaseException) -> None:
    with pytest.raises(type(error)):
        guarded(lambda: _raise(error), what="validation", subject="s3://b/k")


def test_the_result_passes_through() -> None:
    assert guarded(lambda: 42, what="x", subject="y") == 42


def test_reasons_are_storable_and_bounded_keeping_both_ends() -> None:
    assert storable_text("a\x00b\ud800c") == "a\\x00b\\ud800c"
    long = "start " + "k" * 5000 + " KeyTooLongError"
    kept = storable_text(long)
    assert len(kept) <= MAX_REASON_CHARS
    assert kept.startswith("start ")
    assert kept.endswith("KeyTooLongError")
    assert describe(_Hostile()) == "_Hostile: (no message)"


def test_attempts_count_up_to_the_cap() -> None:
    failure = FileFailure("quarantine", ValueError("boom"), "quarantine: ValueError: boom")
    first = next_attempt(failure, attempts_before=0, max_attempts=3)
    assert (first.attempt, first.final) == (1, False)
    assert "attempt 1 of 3" in first.reason
    last = next_attempt(failure, attempts_before=2, max_attempts=3)
    assert (last.attempt, last.final) == (3, True)
    assert last.reason == "quarantine failed in 3 attempts, the last: ValueError: boom"
