"""Discover new or changed objects under a pipeline's prefix and claim them in the files registry.

    result = discover_files(landing, engine, pipeline, run_id, limit=None, prefix=None, keys=None)
    result["file_ids"]   # the files this run now owns

A scheduled or manual run lists the prefix, and considers the objects modified since its watermark (with a
full listing every `full_listing_every_hours`: aps_pipeline.watermark); an event-driven run passes `keys`
(aps_pipeline.events) and each key is HEADed instead: keys outside the prefix or skipped below are ignored,
a key with no object any more is ignored, and the object's current version goes through the same registry
check as a listed one. So events only decide where to look, never what is new: duplicates, stale or foreign
events claim nothing twice.

What is claimed, in ONE transaction:
- an object version (key, ETag) never seen by this pipeline: a new `files` row (state `discovered`);
- a row left unfinished (not loaded/rejected/failed) by an earlier run that crashed or was stopped, or
  that validation left for a later attempt: its `run_id` moves to this run and `attempts` goes up, so
  nothing is lost; its state is kept, and the later steps carry on from there (a file already validated is
  not validated again; validation fails a file after `max_validation_attempts`). This happens whatever the
  limit, and such files take no room: the limit bounds how many NEW files join the run, so files stuck
  in earlier runs never keep new ones out;
- a row this run already claimed (the task is retried): claimed again, unchanged.
An object whose (key, ETag) already reached a terminal state is not claimed again: a changed object has a
new ETag, so it gets a new row and the history stays. A new row's ETag, size and version id come from one
HEAD of the object, never from the listing beside a later HEAD: an object overwritten between the two is
registered as the version the HEAD saw, whole (its metadata, sidecar aside, from the same answer).

Deletions: a key an event-driven run names whose HEAD finds no object (an `s3:ObjectRemoved:*` event's), and
after a full listing, the key of a loaded version that landed before the listing began and that the listing
no longer has, mark that key's newest version `deleted` in the same transaction (aps_versions.documents:
results are kept).

Skipped: sidecars (`*.meta.json`), "directory" keys ending in `/`, anything under the quarantine prefix.
Sidecar or user metadata (S3 user metadata; a local folder's extended attributes) is read here (HEAD + one
small read per new object) and stored as found; the validation step judges it. A sidecar that is not a
JSON object, one the landing refuses to hand over (access denied, archived), or metadata PostgreSQL cannot
store (aps_pipeline.metadata.jsonb_safe_metadata: NUL, lone surrogates) is recorded as such (`_error`), so
the file is rejected with that reason instead of disappearing or failing the claim of the whole batch.

One object never stalls the batch: a HEAD the landing refuses (`AccessRefused`) ends that file `failed` at
once, with the landing's answer as the reason; any other error the landing answers for one object is asked
again, DISCOVERY_READ_ATTEMPTS times in all, and then ends the file `failed` too. Either way the rest of the
batch is claimed, and the failed row keeps that version from being tried again (a new version is a new
file). Errors that are not the landing's answer about one object (the listing itself, a bug) propagate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, and_, or_, select, tuple_

from aps_landing import (
    AccessRefused,
    Landing,
    LandingError,
    ListedObject,
    ObjectChanged,
    ObjectHead,
    read_small,
)
from aps_pipeline.boundary import (
    PROPAGATES,
    FileFailure,
    describe,
    guarded,
    is_storable_text,
    storable_text,
)
from aps_pipeline.config import PipelineConfig
from aps_pipeline.late_sidecars import SIDECAR_ETAG_KEY, LandedSidecar, late_sidecar_files
from aps_pipeline.metadata import (
    ERROR_KEY,
    MAX_SIDECAR_BYTES,
    SIDECAR_SUFFIX,
    SOURCE_KEY,
    MetadataError,
    jsonb_safe_metadata,
    read_sidecar_document,
)
from aps_pipeline.watermark import ListingWindow, advance, listing_window
from aps_results import registry
from aps_results.models import TERMINAL_FILE_STATES, File, FileState
from aps_versions.documents import keys_with_live_versions, mark_deleted

logger = logging.getLogger(__name__)

# Keys are looked up in the registry this many at a time (one round trip each), not one query per key.
_LOOKUP_CHUNK = 1000
# Reads of one object that failed with an error that may pass (not a refusal) are made this many times in all.
DISCOVERY_READ_ATTEMPTS = 3
DISCOVERY_RETRY_PAUSE = 0.2  # seconds before the 2nd attempt; doubled before each later one
# A full listing marks deleted only versions that landed this long before it began: S3's clock may run ahead.
DELETION_SLACK = timedelta(minutes=1)
T = TypeVar("T")
A = TypeVar("A")


@dataclass(frozen=True)
class Candidate:
    """A listed object with what discovery read about it."""

    listed: ListedObject
    version_id: str | None
    content_type: str | None
    metadata: dict[str, Any]
    failure: str | None = None  # why the object could not be read: the file ends `failed` with it


class Unreadable(Exception):
    """One object could not be read: refused, or still failing after DISCOVERY_READ_ATTEMPTS attempts."""


def is_ingestible_key(key: str, quarantine_prefix: str) -> bool:
    """False for sidecars, folder markers and quarantined copies: they are never files to ingest."""
    if key.endswith("/") or key.endswith(SIDECAR_SUFFIX):
        return False
    return not (quarantine_prefix and key.startswith(quarantine_prefix))


def _read(landing: Landing, key: str, what: str, read: Callable[[], T]) -> T:
    """`read()`, asked again on an error that may pass; `Unreadable` on a refusal or the last failure.

    `ObjectChanged` (the object is gone or was replaced) is no failure to read: it propagates as it is. Any
    other exception (not only the landing's errors: a library's surprise too) is asked again, and then is
    the object's reason (aps_pipeline.boundary); only the boundary's PROPAGATES cross it.
    """
    pause = DISCOVERY_RETRY_PAUSE
    for attempt in range(1, DISCOVERY_READ_ATTEMPTS + 1):
        try:
            return read()
        except ObjectChanged:
            raise
        except AccessRefused as exc:
            raise Unreadable(f"{what} {exc}") from exc
        except PROPAGATES:
            raise
        except Exception as exc:
            error = str(exc) if isinstance(exc, LandingError) else describe(exc)
            if attempt == DISCOVERY_READ_ATTEMPTS:
                raise Unreadable(f"{what} failed after {attempt} attempts: {error}") from exc
            logger.warning("%s %s (attempt %d of %d): %s", what, landing.url(key), attempt,
                           DISCOVERY_READ_ATTEMPTS, error)
            time.sleep(pause)
            pause *= 2
    raise AssertionError("unreachable")


def _sidecar_metadata(sidecar: str, raw: bytes) -> dict[str, Any]:
    """A sidecar's bytes as the stored document; a document that is no metadata is recorded with `_error`."""
    try:
        return jsonb_safe_metadata({**read_sidecar_document(raw), SOURCE_KEY: "sidecar"})
    except MetadataError as exc:
        return {SOURCE_KEY: "sidecar", ERROR_KEY: f"{sidecar}: {exc}"}


def read_metadata(landing: Landing, key: str, user_metadata: dict[str, str]) -> dict[str, Any]:
    """The sidecar's JSON object if there is a sidecar, else the user metadata, annotated with `_source`.

    Always a document the registry can store (`jsonb_safe_metadata`). A sidecar the landing refuses, or one
    whose parsing raised anything at all, is recorded with `_error` (the file is rejected for it);
    `Unreadable` if reading it kept failing.
    """
    sidecar = key + SIDECAR_SUFFIX
    try:
        raw = _read(landing, sidecar, "sidecar GET",
                    lambda: read_small(landing, sidecar, MAX_SIDECAR_BYTES))
    except Unreadable as exc:
        if not isinstance(exc.__cause__, AccessRefused):
            raise
        return {SOURCE_KEY: "sidecar", ERROR_KEY: f"{sidecar} could not be read: {exc.__cause__}"}
    if raw is not None:
        parsed = guarded(lambda: _sidecar_metadata(sidecar, raw), what="sidecar parse",
                         subject=landing.url(sidecar))
        if isinstance(parsed, FileFailure):
            return {SOURCE_KEY: "sidecar", ERROR_KEY: f"{sidecar}: {parsed.reason}"}
        return parsed
    if user_metadata:  # "s3": kept with the object itself (S3 user metadata, or a file's attributes)
        return jsonb_safe_metadata({**user_metadata, SOURCE_KEY: "s3"})
    return {SOURCE_KEY: "none"}


def _known_versions(
    engine: Engine, pipeline: str, bucket: str, objects: list[ListedObject]
) -> set[tuple[str, str]]:
    """The (key, etag) pairs among `objects` that the registry already has, in whatever state."""
    known: set[tuple[str, str]] = set()
    with engine.connect() as connection:
        for start in range(0, len(objects), _LOOKUP_CHUNK):
            chunk = [(o.key, o.etag) for o in objects[start : start + _LOOKUP_CHUNK]]
            rows = connection.execute(
                select(File.s3_key, File.etag).where(
                    File.pipeline == pipeline,
                    File.s3_bucket == bucket,
                    tuple_(File.s3_key, File.etag).in_(chunk),
                )
            )
            known.update((key, etag) for key, etag in rows)
    return known


def _owned_and_unfinished(
    engine: Engine, pipeline: str, run_id: str
) -> tuple[set[int], dict[int, str | None]]:
    """(ids this run already owns, {id: run} of unfinished files other runs own) before claiming."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(File.id, File.run_id).where(
                File.pipeline == pipeline,
                or_(File.run_id == run_id, File.state.not_in([s.value for s in TERMINAL_FILE_STATES])),
            )
        ).all()
    return {i for i, r in rows if r == run_id}, {i: r for i, r in rows if r != run_id}


def _head(landing: Landing, key: str) -> ObjectHead | None:
    """The object's HEAD; None if it is gone; `Unreadable` if refused or still failing after retries."""
    try:
        return _read(landing, key, "HEAD", lambda: landing.head(key))
    except ObjectChanged:
        logger.info("%s is gone (deleted or replaced since it was named); skipped", landing.url(key))
        return None


def _in_parallel(work: Callable[[A], T], items: list[A], concurrency: int) -> list[T]:
    """`[work(item) for item in items]`, `concurrency` at a time: the landing's reads are I/O waits."""
    with ThreadPoolExecutor(max(1, min(concurrency, len(items) or 1)), thread_name_prefix="discover") as pool:
        return list(pool.map(work, items))


def _listed_by_keys(
    landing: Landing, keys: Iterable[str], prefix: str, quarantine_prefix: str, concurrency: int
) -> tuple[list[ListedObject], dict[str, ObjectHead], list[str]]:
    """The named objects that exist under `prefix`, as a listing would give them, with their HEADs; and the
    named keys the landing says have no object (deleted, as an `s3:ObjectRemoved:*` event says)."""
    named = [key for key in dict.fromkeys(keys)
             if key.startswith(prefix) and is_ingestible_key(key, quarantine_prefix)]

    def head_or_skip(key: str) -> ObjectHead | FileFailure | None:
        # No listing names its version, so there is nothing to record: the next listing will.
        return guarded(lambda: _head(landing, key), what="HEAD", subject=landing.url(key))

    outcomes = dict(zip(named, _in_parallel(head_or_skip, named, concurrency), strict=True))
    heads = {key: h for key, h in outcomes.items() if isinstance(h, ObjectHead)}
    listed = [ListedObject(h.key, h.etag, h.size, last_modified=h.last_modified) for h in heads.values()]
    return listed, heads, [key for key, outcome in outcomes.items() if outcome is None]


def _inspect(landing: Landing, listed: ListedObject, head: ObjectHead | None = None) -> Candidate | None:
    """What to register for one listed object; None if it is gone, a `failure` if it could not be read.

    The per-file boundary: whatever one object's HEAD and sidecar raise is that file's failure, never the
    batch's (aps_pipeline.boundary).
    """
    outcome = guarded(lambda: _read_candidate(landing, listed, head), what="discovery",
                      subject=landing.url(listed.key))
    if isinstance(outcome, FileFailure):
        return Candidate(listed, None, None, {}, failure=outcome.reason)
    return outcome


def _read_candidate(landing: Landing, listed: ListedObject, head: ObjectHead | None) -> Candidate | None:
    try:
        if head is None:
            head = _head(landing, listed.key)
        if head is None:
            return None
        metadata = read_metadata(landing, listed.key, dict(head.metadata))
    except Unreadable as exc:
        logger.error("%s; the file fails", exc)
        return Candidate(listed, None, None, {}, failure=storable_text(str(exc)))
    if head.etag != listed.etag:
        logger.info("%s was replaced since the listing; the version HEAD found is registered",
                    landing.url(listed.key))
    # ETag, size, version id and landing time all from the one HEAD: the listing's may be of an older version.
    current = ListedObject(listed.key, head.etag, head.size, head.last_modified or listed.last_modified)
    return Candidate(listed=current, version_id=head.version_id, content_type=head.content_type,
                     metadata=metadata)


def _with_judged_sidecars(candidates: list[Candidate], sidecars: list[LandedSidecar]) -> list[Candidate]:
    """Note on each candidate read from a sidecar which version of it discovery read (its ETag as listed):
    that sidecar is judged with the file, so its "arrival" in a later listing re-opens nothing
    (late_sidecars: only a sidecar version the file never saw does)."""
    etags = {sidecar.key: sidecar.etag for sidecar in sidecars}
    judged = []
    for candidate in candidates:
        etag = etags.get(candidate.listed.key + SIDECAR_SUFFIX)
        if etag is not None and candidate.metadata.get(SOURCE_KEY) == "sidecar":
            candidate = replace(candidate, metadata={**candidate.metadata, SIDECAR_ETAG_KEY: etag})
        judged.append(candidate)
    return judged


def discover_files(
    landing: Landing,
    engine: Engine,
    pipeline: PipelineConfig,
    run_id: str,
    *,
    limit: int | None = None,
    prefix: str | None = None,
    keys: Iterable[str] | None = None,
    run_is_active: Callable[[str], bool] = lambda run_id: False,
) -> dict[str, Any]:
    """List the landing prefix (or HEAD `keys`) and claim new, changed and unfinished files for `run_id`.

    `limit` (default: the pipeline's max_files_per_run) bounds how many new files this run takes; the rest
    wait for the next run (oldest first, so nothing starves). `prefix` narrows the pipeline's landing prefix
    (a manual run's param) and must lie inside it. `keys` (an event-driven run's) replaces the listing by one
    HEAD per key under the prefix; keys beyond the limit wait for the next scheduled listing.
    Unfinished files of earlier runs are taken over unless `run_is_active(their run)`: runs of a pipeline
    may overlap, and a run still at work keeps its files (the default suits one run at a time).
    Sidecars that landed after their files re-open those files' metadata rejections (late_sidecars).
    """
    listing_prefix = _listing_prefix(pipeline, prefix)
    limit = pipeline.max_files_per_run if limit is None else limit
    if limit < 0:
        raise ValueError("limit must be >= 0")
    window = None if keys is None else ListingWindow(datetime.now(UTC), None)  # events: no watermark
    window = window or listing_window(engine, pipeline, landing.location, listing_prefix)
    landed = _landed(landing, pipeline, listing_prefix, keys, window).without_unstorable_keys()
    listed = landed.objects
    listed.sort(key=lambda o: (o.last_modified is None, o.last_modified, o.key))
    known = _known_versions(engine, pipeline.name, landing.location, listed)
    mine, others = _owned_and_unfinished(engine, pipeline.name, run_id)
    ended = {run for run in set(others.values()) if run is not None and not run_is_active(run)}
    orphans = {file_id for file_id, run in others.items() if run is None or run in ended}

    # Unfinished work from earlier runs is always taken over and takes no room: the limit bounds how many
    # new files join the run (with those this run already claimed, if the task is retried).
    room = max(0, limit - len(mine))
    new_objects = [o for o in listed if (o.key, o.etag) not in known]
    inspected = _in_parallel(lambda o: _inspect(landing, o, landed.heads.get(o.key)), new_objects[:room],
                             pipeline.read_concurrency)
    candidates = _with_judged_sidecars([c for c in inspected if c is not None], landed.sidecars)
    late = late_sidecar_files(landing, engine, pipeline, landed.sidecars, read_metadata,
                              lambda run: run != run_id and run_is_active(run))

    with engine.begin() as connection:
        deleted = _mark_deleted(connection, landing, pipeline, listing_prefix, window, landed)
        reopened = set(registry.reopen_rejected_files(connection, pipeline.name, run_id, late))
        claimed = registry.claim_files(connection, pipeline.name, run_id,
                                       [_discovered(landing.location, c) for c in candidates],
                                       take_over_from=ended)
        if keys is None:
            waiting = new_objects[room:]
            advance(connection, pipeline, landing.location, listing_prefix, window,
                    waiting[0].last_modified if waiting else None)
    file_ids = [f.id for f in claimed]
    reclaimed = orphans & set(file_ids)
    result = {
        "run_id": run_id,
        "listed": landed.listed,
        "considered": len(listed),
        "full_listing": keys is None and window.full,
        "source": "listing" if keys is None else "events",
        "new": len(set(file_ids) - mine - reclaimed - reopened),
        "reclaimed": len(reclaimed),
        "reopened": len(reopened),
        "already_claimed": len(mine),
        "waiting": max(0, len(new_objects) - room),
        "held_by_active_runs": len(others) - len(orphans),
        "unreadable": sum(1 for c in candidates if c.failure is not None),
        "unstorable_keys": landed.unstorable,
        "versions_deleted": len(deleted),
        "file_ids": file_ids,
    }
    logger.info(
        "%s: %d listed, %d new, %d re-claimed from earlier runs, %d re-opened by late sidecars, %d left for "
        "later runs", landing.url(listing_prefix), result["listed"], result["new"], result["reclaimed"],
        result["reopened"], result["waiting"],
    )  # fmt: skip
    return result


def _mark_deleted(connection: Connection, landing: Landing, pipeline: PipelineConfig, listing_prefix: str,
                  window: ListingWindow, landed: _Landed) -> list[int]:
    """Versions whose objects left the landing, marked deleted: the keys an event run found gone, or after a
    full listing, the keys of versions that landed before it began and that it did not find."""
    gone = set(landed.gone)
    if window.full and landed.complete:
        before = window.started - DELETION_SLACK  # S3's clock and ours may differ a little
        live = keys_with_live_versions(connection, pipeline.name, landing.location, listing_prefix, before)
        gone |= live - {o.key for o in landed.objects}  # every object listed (the limit cuts no listing)
    deleted = mark_deleted(connection, pipeline.name, landing.location, gone)
    if deleted:
        logger.info("%s: %d version(s) marked deleted: their objects left the landing",
                    landing.url(listing_prefix), len(deleted))
    return deleted


def _listing_prefix(pipeline: PipelineConfig, prefix: str | None) -> str:
    base_prefix = pipeline.landing.prefix
    listing_prefix = base_prefix if prefix is None else prefix
    if not listing_prefix.startswith(base_prefix):
        raise ValueError(f"prefix {prefix!r} is outside the pipeline's landing prefix {base_prefix!r}")
    return listing_prefix


@dataclass
class _Landed:
    """What a listing (or an event run's HEADs) found: files to consider, their HEADs, landed sidecars."""

    objects: list[ListedObject]  # those the listing window includes
    heads: dict[str, ObjectHead]
    sidecars: list[LandedSidecar]
    listed: int  # objects (files) the listing or the events named, in or out of the window
    unstorable: int = 0  # keys no registry row can hold (left out, logged)
    gone: list[str] = field(default_factory=list)  # keys the events named that have no object
    complete: bool = True  # a listing of the whole prefix (False: events, which name some keys)

    def without_unstorable_keys(self) -> _Landed:
        """Leave out keys PostgreSQL cannot store (a local file name that is no UTF-8 arrives with lone
        surrogates): such an object can be neither registered nor uploaded, and one of them in the claim's
        insert would fail it for the whole batch, on every run."""
        storable = [o for o in self.objects if is_storable_text(o.key)]
        for o in self.objects:
            if not is_storable_text(o.key):
                logger.error("%r cannot be registered (its key is no valid text: rename it); left out",
                             o.key)
        sidecars = [s for s in self.sidecars if is_storable_text(s.key)]
        return _Landed(storable, self.heads, sidecars, self.listed, len(self.objects) - len(storable),
                       self.gone, self.complete)


def _landed(
    landing: Landing, pipeline: PipelineConfig, listing_prefix: str, keys: Iterable[str] | None,
    window: ListingWindow,
) -> _Landed:
    quarantine_prefix = pipeline.landing.quarantine_prefix
    if keys is None:
        objects, sidecars, listed = [], [], 0
        for o in landing.list(listing_prefix):
            if is_ingestible_key(o.key, quarantine_prefix):
                listed += 1
                if window.includes(o.last_modified):
                    objects.append(o)
            elif (_is_sidecar(o.key, quarantine_prefix) and o.last_modified is not None
                  and window.includes(o.last_modified)):
                sidecars.append(LandedSidecar(o.key, o.etag, o.last_modified))
        return _Landed(objects, {}, sidecars, listed)
    named = list(dict.fromkeys(keys))
    listed, heads, gone = _listed_by_keys(landing, named, listing_prefix, quarantine_prefix,
                                          pipeline.read_concurrency)
    arrived = datetime.now(UTC)  # an event's sidecar arrived about now: the event is seconds old
    sidecar_heads = [
        guarded(lambda key=key: landing.head(key), what="sidecar HEAD", subject=landing.url(key))
        for key in named if key.startswith(listing_prefix) and _is_sidecar(key, quarantine_prefix)
    ]
    sidecars = [LandedSidecar(h.key, h.etag, arrived) for h in sidecar_heads if isinstance(h, ObjectHead)]
    return _Landed(listed, heads, sidecars, len(listed), gone=gone, complete=False)


def _is_sidecar(key: str, quarantine_prefix: str) -> bool:
    return key.endswith(SIDECAR_SUFFIX) and not (quarantine_prefix and key.startswith(quarantine_prefix))


def _discovered(bucket: str, candidate: Candidate) -> registry.DiscoveredObject:
    return registry.DiscoveredObject(
        s3_bucket=bucket,
        s3_key=candidate.listed.key,
        etag=candidate.listed.etag,
        size=candidate.listed.size,
        version_id=candidate.version_id,
        content_type=candidate.content_type,
        metadata=candidate.metadata,
        landed_at=candidate.listed.last_modified,
        state=FileState.DISCOVERED if candidate.failure is None else FileState.FAILED,
        reason=candidate.failure,
    )


def run_file_ids(
    engine: Engine, pipeline: str, run_id: str, states: Iterable[str] | None = None
) -> list[int]:
    """Ids of the files `run_id` owns, optionally only those in `states`."""
    condition = and_(File.pipeline == pipeline, File.run_id == run_id)
    if states is not None:
        condition = and_(condition, or_(*(File.state == s for s in states)))
    with engine.connect() as connection:
        return list(connection.scalars(select(File.id).where(condition).order_by(File.id)))
