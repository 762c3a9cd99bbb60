"""One per-file error boundary for every step that handles files: one file's trouble is that file's reason.

    outcome = guarded(lambda: work(row), what="validation", subject=row.s3_key)
    if isinstance(outcome, FileFailure):
        verdict = next_attempt(outcome, attempts_before=row.attempts, max_attempts=cap)
        if verdict.final: end the file (failed, or rejected-not-quarantined) with verdict.reason
        else:             record verdict.reason and the attempt; the next run tries again

Any exception from one file's work becomes a `FileFailure` (with a reason PostgreSQL can store), not only the
classes a step knows: a hostile document's RecursionError, a library's surprise, a bug one odd input
reaches. Such a failure counts as an attempt on the file; after `max_attempts` the file ends with the last
reason. So no input can make a step fail on every run.

Only what is no file's fault crosses the boundary and fails the step as a whole: the shared infrastructure
being down (the results database unreachable or at another schema: SQLAlchemy's OperationalError,
InterfaceError, InternalError, ProgrammingError; `SharedInfrastructureError`, which a step raises for its
own shared parts) and the process's own trouble (MemoryError; BaseExceptions such as
KeyboardInterrupt pass anyway). A step records each file's verdict in one transaction, so a step that
fails that way leaves no file half-recorded.

Used by discovery (HEAD, sidecar read and parse), validation and quarantine; the upload, submit and settle
steps can use it the same way (it imports nothing of them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.exc import InterfaceError, InternalError, OperationalError, ProgrammingError

logger = logging.getLogger(__name__)

T = TypeVar("T")
MAX_REASON_CHARS = 1000  # a reason is for people (the run page, the quarantine's reason file), not a dump


class SharedInfrastructureError(RuntimeError):
    """Something every file needs is down (the listing, the results database): the step fails as a whole."""


# Never a file's fault: these propagate through the boundary. Of the database's errors, those that say it is
# unreachable or the schema is not what the code expects; a value one file brings that PostgreSQL refuses
# (DataError, IntegrityError) is that file's.
PROPAGATES: tuple[type[BaseException], ...] = (
    SharedInfrastructureError, OperationalError, InterfaceError, InternalError, ProgrammingError, MemoryError,
)


def is_storable_text(text: str) -> bool:
    """Whether PostgreSQL's text can hold `text` as it is (no NUL, no lone surrogate)."""
    return "\x00" not in text and not any("\ud800" <= c <= "\udfff" for c in text)


def storable_text(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """`text` as PostgreSQL's text can hold it (no NUL, no lone surrogate), at most `limit` characters.

    A longer text keeps its start and its end (an error's code is often last, after a long key).
    """
    if len(text) > limit:
        half = (limit - 3) // 2
        text = f"{text[:half]} … {text[-half:]}"
    return "".join(
        f"\\x{ord(c):02x}" if c == "\x00" else (f"\\u{ord(c):04x}" if "\ud800" <= c <= "\udfff" else c)
        for c in text
    )


def describe(error: BaseException) -> str:
    """`Type: message` of an exception, storable; never fails (a hostile __str__ included)."""
    try:
        message = str(error)
    except Exception:  # an exception whose message cannot be made: its type still says something
        message = "(no message)"
    return storable_text(f"{type(error).__name__}: {message}" if message else type(error).__name__)


@dataclass(frozen=True)
class FileFailure:
    """One file's work raised: `reason` says what was being done and what went wrong."""

    what: str
    error: BaseException
    reason: str


def guarded(work: Callable[[], T], *, what: str, subject: str) -> T | FileFailure:
    """`work()`, or a FileFailure for any exception that is the file's (see the module docstring).

    `what` names the work ("sidecar read", "validation", "quarantine") and `subject` the file (its URL or
    key) in the log line; the reason holds `what` and the exception.
    """
    try:
        return work()
    except PROPAGATES:
        raise
    except Exception as exc:
        reason = f"{what}: {describe(exc)}"
        logger.warning("%s of %s failed: %s", what, subject, reason, exc_info=exc)
        return FileFailure(what, exc, storable_text(reason))


@dataclass(frozen=True)
class AttemptVerdict:
    """What a failed attempt means for the file: `final` (end it with `reason`) or try again next run."""

    attempt: int
    final: bool
    reason: str


def next_attempt(failure: FileFailure, *, attempts_before: int, max_attempts: int) -> AttemptVerdict:
    """The verdict on attempt `attempts_before + 1` that ended in `failure`, of at most `max_attempts`."""
    attempt = attempts_before + 1
    if attempt >= max_attempts:
        reason = f"{failure.what} failed in {attempt} attempts, the last: {describe(failure.error)}"
        return AttemptVerdict(attempt, True, storable_text(reason))
    reason = (f"{failure.what} attempt {attempt} of {max_attempts} failed (the next run tries again): "
              f"{describe(failure.error)}")
    return AttemptVerdict(attempt, False, storable_text(reason))
