"""Model Derivative: translation jobs, manifests, model views, object tree, properties, thumbnails, formats
(aps-api.md §2.8-2.15). Region travels as the `region` header.

The object tree and properties answer 202 while APS is still extracting them: poll with bounded backoff.
Above 20 MB they answer 413: ask again with `forceget=true`; for properties, if that still says 413, page
through `properties:query` instead. A forceget answer can be hundreds of MB: the blocking client's
`iter_object_tree` / `iter_properties` parse it while it arrives (`aps_client.derivative_readers`) and
yield one object at a time.

Waiting on a translation is one decision, `manifest_verdict`: given what one manifest GET gave (the
manifest, or the error it raised) and the URN's `ManifestPoll` state, is the translation done, failed, not
there at all, or not finished yet? Every waiter (the provider's sensor and trigger) asks it; none of them
interprets a manifest or an error class itself.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx

from aps_client.config import APSConfig
from aps_client.derivative_readers import properties_from_chunks, response_chunks, tree_entries_from_chunks
from aps_client.errors import APSError, APSNotFoundError, APSStillProcessingError
from aps_client.models import (
    FINISHED_STATUSES,
    RUNNING_STATUSES,
    JobAccepted,
    Manifest,
    ManifestMessage,
    ModelView,
    ObjectProperties,
    TreeEntry,
    TreeNode,
)
from aps_client.transport import AsyncTransport, Flow, RequestSpec, Sleep, SyncTransport, error_from_response
from aps_client.wait_policy import WaitPolicy

BASE = "/modelderivative/v2/designdata"
#: The output formats a translation asks for unless told otherwise: SVF2 with 2D and 3D views (what the
#: viewer needs) plus a thumbnail. The one definition: the provider's operator and the pipelines file's
#: default read it from here (through `default_formats()`, which hands out a copy).
DEFAULT_FORMATS: tuple[dict[str, Any], ...] = ({"type": "svf2", "views": ["2d", "3d"]}, {"type": "thumbnail"})
QUERY_PAGE_SIZE = 1000  # the maximum properties:query allows
THUMBNAIL_SIZES = (100, 200, 400)
#: Bounds of the messages a verdict carries (they end up in a trigger event row and in a task's error).
MAX_VERDICT_MESSAGES = 10
MAX_MESSAGE_CHARS = 300
def job_is_reusable(status: str | None, *, force: bool) -> bool:
    """The one job-reuse decision: does a manifest in `status` (None: no manifest) show a job that a new
    POST would only repeat? A running job always (a second POST is a second billed job, and with
    `x-ads-force` it restarts the first); a successful one unless `force` asks for a new translation."""
    return status in RUNNING_STATUSES or (status == "success" and not force)


class Submission(StrEnum):
    """What `DerivativeClient.submit` did."""

    SUBMITTED = "submitted"  # a job was POSTed and APS accepted it
    ALREADY_TRANSLATED = "already_translated"  # POSTed; APS answered 201: the derivatives exist
    REUSED = "reused"  # not POSTed: the manifest shows a job this one would only repeat


def default_formats() -> list[dict[str, Any]]:
    """A fresh copy of DEFAULT_FORMATS, safe to change."""
    return copy.deepcopy(list(DEFAULT_FORMATS))


@dataclass(frozen=True)
class Polling:
    initial: float
    maximum: float
    timeout: float

    @classmethod
    def from_config(cls, config: APSConfig) -> Polling:
        return cls(config.poll_initial_delay, config.poll_max_delay, config.poll_timeout)


def region_headers(region: str) -> dict[str, str]:
    return {"region": region.upper()}


def job_body(
    urn: str,
    formats: list[dict[str, Any]] | None,
    workflow: str | None,
    root_filename: str | None,
    workflow_attribute: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "input": {"urn": urn},
        "output": {"formats": list(formats) if formats else default_formats()},
    }
    if root_filename:
        # A zip with several files: tell APS which one is the main design.
        body["input"].update({"compressedUrn": True, "rootFilename": root_filename})
    if workflow:
        body["misc"] = {"workflow": workflow}
        if workflow_attribute:
            body["misc"]["workflowAttribute"] = workflow_attribute
    return body


#: How often an ambiguous POST /job (APS may have taken it) is followed by a look and another POST.
JOB_POST_ATTEMPTS = 3


def start_job_flow(
    urn: str,
    region: str,
    formats: list[dict[str, Any]] | None,
    force: bool,
    workflow: str | None,
    root_filename: str | None,
) -> Flow[JobAccepted]:
    headers = region_headers(region)
    if force:
        headers["x-ads-force"] = "true"  # wipe existing derivatives and translate again
    post = RequestSpec(
        "POST",
        f"{BASE}/job",
        family="md_job",
        headers=headers,
        json=job_body(urn, formats, workflow, root_filename),
        idempotent=False,
    )
    for attempt in range(1, JOB_POST_ATTEMPTS + 1):
        try:
            response = yield post
        except APSError as error:
            # A 5xx or a lost connection: APS may have taken the job. Look before POSTing again, because a
            # second POST is a second job, and with x-ads-force it restarts the one just started.
            if not error.ambiguous or attempt == JOB_POST_ATTEMPTS:
                raise
            yield Sleep(1.0)  # let APS register a job it did take before reading the manifest
            status = yield from _manifest_status(urn, region)
            if job_is_reusable(status, force=force):
                return JobAccepted(urn=urn, result=status, already_translated=status == "success")
            continue
        accepted = {"urn": urn, **response.json(), "already_translated": response.status_code == 201}
        return JobAccepted.model_validate(accepted)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _manifest_status(urn: str, region: str) -> Flow[str | None]:
    """The manifest's status, or None when there is none (APS has no job for the design)."""
    response = yield RequestSpec(
        "GET", f"{BASE}/{urn}/manifest", family="md_manifest", headers=region_headers(region),
        accept=frozenset({404}),
    )
    if response.status_code == 404:
        return None
    return Manifest.model_validate(response.json()).status


def manifest_flow(urn: str, region: str) -> Flow[Manifest]:
    response = yield RequestSpec(
        "GET", f"{BASE}/{urn}/manifest", family="md_manifest", headers=region_headers(region)
    )
    return Manifest.model_validate(response.json())


def delete_manifest_flow(urn: str, region: str) -> Flow[None]:
    yield RequestSpec(
        "DELETE", f"{BASE}/{urn}/manifest", family="md_manifest", headers=region_headers(region)
    )


def views_flow(urn: str, region: str) -> Flow[list[ModelView]]:
    response = yield RequestSpec(
        "GET", f"{BASE}/{urn}/metadata", family="md_views", headers=region_headers(region)
    )
    items = (response.json().get("data") or {}).get("metadata") or []
    return [ModelView.model_validate(item) for item in items]


def until_ready(spec: RequestSpec, polling: Polling) -> Flow[httpx.Response]:
    """Send `spec` until the answer is not 202 (still processing), sleeping with bounded backoff."""
    deadline = time.monotonic() + polling.timeout
    delay = polling.initial
    while True:
        response = yield spec
        if response.status_code != 202:
            return response
        if time.monotonic() + delay > deadline:
            raise APSStillProcessingError(
                f"APS still processing after {polling.timeout:.0f}s (202)",
                status_code=202,
                method=spec.method,
                url=spec.path,
            )
        yield Sleep(delay)
        delay = min(delay * 2, polling.maximum)


def _metadata_get(
    path: str, family: str, region: str, polling: Polling, stream: bool = False
) -> Flow[httpx.Response]:
    """GET with 202 polling; on 413 the same with forceget=true. Returns the 200, or the forceget 413.
    `stream`: the 200's body is left unread (see RequestSpec.stream)."""
    accept = frozenset({202, 413})
    response = yield from until_ready(
        RequestSpec("GET", path, family=family, headers=region_headers(region), accept=accept, stream=stream),
        polling,
    )
    if response.status_code == 413:
        response = yield from until_ready(
            RequestSpec(
                "GET",
                path,
                family="md_forceget",
                headers=region_headers(region),
                params={"forceget": "true"},
                accept=accept,
                stream=stream,
            ),
            polling,
        )
    return response


def object_tree_flow(urn: str, guid: str, region: str, polling: Polling) -> Flow[list[TreeNode]]:
    response = yield from _metadata_get(f"{BASE}/{urn}/metadata/{guid}", "md_tree", region, polling)
    if response.status_code == 413:
        raise error_from_response(response)  # over the forceget ceiling (800 MB): nothing more to try
    objects = (response.json().get("data") or {}).get("objects") or []
    return [TreeNode.model_validate(item) for item in objects]


def properties_flow(urn: str, guid: str, region: str, polling: Polling) -> Flow[list[ObjectProperties]]:
    path = f"{BASE}/{urn}/metadata/{guid}/properties"
    response = yield from _metadata_get(path, "md_properties", region, polling)
    if response.status_code == 413:
        return (yield from properties_query_flow(urn, guid, region, polling))
    collection = (response.json().get("data") or {}).get("collection") or []
    return [ObjectProperties.model_validate(item) for item in collection]


def properties_query_flow(urn: str, guid: str, region: str, polling: Polling) -> Flow[list[ObjectProperties]]:
    """Every object's properties, a page (≤ 1000 objects) at a time, via POST properties:query."""
    found: list[ObjectProperties] = []
    more = True
    while more:
        page, more = yield from properties_page_flow(urn, guid, region, polling, len(found))
        found.extend(page)
    return found


def properties_page_flow(
    urn: str, guid: str, region: str, polling: Polling, offset: int
) -> Flow[tuple[list[ObjectProperties], bool]]:
    """One page of properties:query from `offset`: its objects, and whether more pages follow."""
    # No `query`: it is an optional filter (aps-api.md §2.13 documents only the pagination), and without
    # one every object matches.
    body = {
        "fields": ["objectid", "name", "externalId", "properties"],
        "pagination": {"offset": offset, "limit": QUERY_PAGE_SIZE},
        "payload": "text",
    }
    spec = RequestSpec(
        "POST",
        f"{BASE}/{urn}/metadata/{guid}/properties:query",
        family="md_properties_query",
        headers=region_headers(region),
        json=body,
        accept=frozenset({202}),
    )
    page = (yield from until_ready(spec, polling)).json()
    collection = (page.get("data") or {}).get("collection") or []
    total = (page.get("pagination") or {}).get("totalResults")
    more = bool(collection) and (total is None or offset + len(collection) < int(total))
    return [ObjectProperties.model_validate(item) for item in collection], more


def thumbnail_flow(urn: str, region: str, width: int | None, height: int | None) -> Flow[bytes]:
    for value in (width, height):
        if value is not None and value not in THUMBNAIL_SIZES:
            raise ValueError(f"thumbnail width/height must be one of {THUMBNAIL_SIZES}, got {value}")
    params = {key: value for key, value in (("width", width), ("height", height)) if value is not None}
    response = yield RequestSpec(
        "GET", f"{BASE}/{urn}/thumbnail", family="md_thumbnail", headers=region_headers(region), params=params
    )
    return response.content


def formats_flow() -> Flow[dict[str, list[str]]]:
    response = yield RequestSpec("GET", f"{BASE}/formats", family="md_formats")
    return dict(response.json().get("formats") or {})


# -- waiting on a translation ------------------------------------------------------------------------------


class PollState(StrEnum):
    """What one manifest poll says about a translation."""

    PENDING = "pending"  # not finished, not there yet (a 404 within the grace), or passing trouble: poll on
    DONE = "done"  # APS finished with status `success`
    FAILED = "failed"  # APS finished without derivatives (`failed`, `timeout`); messages say why
    MISSING = "missing"  # still no manifest after the 404 grace: the job was most likely never submitted
    ERROR = "error"  # the manifest cannot be read (auth, permission, bad request): waiting will not fix it


@dataclass
class ManifestPoll:
    """The poll state of one URN, kept by its waiter between manifest GETs.

    :param urn: The URN waited on.
    :param not_found_grace: Seconds a 404 (APS may answer one right after the job POST) counts as "not
        there yet" before the verdict is `missing`.
    """

    urn: str
    not_found_grace: float = WaitPolicy.not_found_grace
    first_not_found: float | None = None  # when the current run of 404s began (the waiter's clock)
    last_status: str | None = None  # the last manifest's status and progress
    last_progress: str | None = None


@dataclass(frozen=True)
class PollVerdict:
    """The answer of `manifest_verdict`: small, plain and bounded (a waiter may put it in an event).

    `status` and `progress` are the manifest's when one was read; `changed` says they differ from the
    previous manifest's (worth a log line). `reason` says why for every state but a plain pending; `error`
    names the error the GET raised, if any ("APSServerError: ...").
    """

    state: PollState
    status: str | None = None
    progress: str | None = None
    messages: tuple[str, ...] = ()
    reason: str = ""
    error: str | None = None
    changed: bool = False

    @property
    def finished(self) -> bool:
        """The waiter is done with this URN: no further GET can change the verdict."""
        return self.state is not PollState.PENDING


def summarize_messages(messages: Sequence[ManifestMessage]) -> list[str]:
    """APS's manifest messages as short strings ("error TranslationWorker-InternalFailure: ..."), bounded."""
    summary = []
    for message in messages[:MAX_VERDICT_MESSAGES]:
        # The template's words are shortened, never its arguments (the file names a user must see).
        head = f"{message.type} {message.code}:"
        summary.append(f"{head} {message.bounded(MAX_MESSAGE_CHARS - len(head) - 1)}".strip())
    if len(messages) > MAX_VERDICT_MESSAGES:
        summary.append(f"... and {len(messages) - MAX_VERDICT_MESSAGES} more messages")
    return summary


def manifest_verdict(poll: ManifestPoll, outcome: Manifest | APSError, now: float) -> PollVerdict:
    """Judge one manifest GET of `poll.urn`: `outcome` is the manifest, or the APS error the GET raised.

    Updates `poll` (the 404 clock, the last status seen). `now` is the waiter's clock in seconds (any
    monotonic-enough clock, as long as the waiter always passes the same one).
    """
    if isinstance(outcome, APSNotFoundError):
        # APS may answer 404 for a moment right after the job POST; only a lasting 404 ends the wait.
        if poll.first_not_found is None:
            poll.first_not_found = now
        if now - poll.first_not_found > poll.not_found_grace:
            return PollVerdict(PollState.MISSING, reason=f"No manifest for {poll.urn} after "
                               f"{poll.not_found_grace:.0f}s (was the job submitted?)")
        return PollVerdict(PollState.PENDING, reason="manifest not found yet")
    if isinstance(outcome, APSError):
        error = f"{type(outcome).__name__}: {outcome}"
        if outcome.retryable:  # the client already retried: the next poll tries again
            return PollVerdict(PollState.PENDING, reason="transient APS trouble", error=error)
        return PollVerdict(PollState.ERROR, reason=error, error=error)

    poll.first_not_found = None
    status, progress = outcome.status, outcome.progress
    changed = (status, progress) != (poll.last_status, poll.last_progress)
    poll.last_status, poll.last_progress = status, progress
    if status not in FINISHED_STATUSES:
        return PollVerdict(PollState.PENDING, status, progress, changed=changed)
    messages = tuple(summarize_messages(outcome.messages()))
    if status == "success":
        return PollVerdict(PollState.DONE, status, progress, messages, changed=changed)
    return PollVerdict(PollState.FAILED, status, progress, messages,
                       reason=f"translation ended with status {status!r}", changed=changed)


#: Statuses a waiter reports for a URN besides APS's own finished ones.
DEADLINE_EXCEEDED = "deadline_exceeded"  # the wait's deadline passed first
WAIT_ERROR = "error"  # no manifest after the grace, or it cannot be read


def waited_status(verdict: PollVerdict) -> dict[str, Any]:
    """A finished verdict as the small, plain entry a waiter reports: {status, progress, reason?}.

    `status` is APS's (`success`, `failed`, `timeout`) when APS finished, else `error` with the reason.
    """
    if verdict.state in (PollState.DONE, PollState.FAILED):
        return {"status": verdict.status or WAIT_ERROR, "progress": verdict.progress}
    return {"status": WAIT_ERROR, "progress": verdict.progress, "reason": verdict.reason}


def deadline_status(poll: ManifestPoll) -> dict[str, Any]:
    """The entry of a URN whose translation had not finished when the wait's deadline passed."""
    return {"status": DEADLINE_EXCEEDED, "progress": poll.last_progress,
            "reason": f"translation still {poll.last_status or 'unknown'} at the deadline"}


class DerivativeClient:
    """Model Derivative with blocking I/O."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport
        self._region = transport.config.region
        self._polling = Polling.from_config(transport.config)

    def start_job(
        self,
        urn: str,
        *,
        region: str | None = None,
        formats: list[dict[str, Any]] | None = None,
        force: bool = False,
        workflow: str | None = None,
        root_filename: str | None = None,
    ) -> JobAccepted:
        """Start a translation (default: SVF2 with 2D and 3D views, plus a thumbnail)."""
        return self._transport.run(
            start_job_flow(urn, region or self._region, formats, force, workflow, root_filename)
        )

    def submit(
        self,
        urn: str,
        *,
        region: str | None = None,
        formats: list[dict[str, Any]] | None = None,
        force: bool = False,
        retried: bool = False,
        reuse_existing_job: bool = True,
        workflow: str | None = None,
        root_filename: str | None = None,
    ) -> Submission:
        """Start a translation unless one is already there; never POST a job twice by accident.

        Without `force`, a manifest that is pending, in progress or successful is reused (a re-run after a
        crash waits on the job it submitted). With `force`, a first try always POSTs (`x-ads-force`); a
        `retried` one first looks for a job still running, which its earlier try may have started: POSTing
        again would restart it (a second billed translation).
        """
        region = region or self._region
        if reuse_existing_job and (retried or not force):
            try:
                status = self.manifest(urn, region=region).status
            except APSNotFoundError:
                status = None
            if job_is_reusable(status, force=force):
                return Submission.REUSED
        accepted = self.start_job(urn, region=region, formats=formats, force=force, workflow=workflow,
                                  root_filename=root_filename)
        return Submission.ALREADY_TRANSLATED if accepted.already_translated else Submission.SUBMITTED

    def manifest(self, urn: str, region: str | None = None) -> Manifest:
        return self._transport.run(manifest_flow(urn, region or self._region))

    def delete_manifest(self, urn: str, region: str | None = None) -> None:
        self._transport.run(delete_manifest_flow(urn, region or self._region))

    def views(self, urn: str, region: str | None = None) -> list[ModelView]:
        return self._transport.run(views_flow(urn, region or self._region))

    def object_tree(self, urn: str, guid: str, region: str | None = None) -> list[TreeNode]:
        return self._transport.run(object_tree_flow(urn, guid, region or self._region, self._polling))

    def properties(self, urn: str, guid: str, region: str | None = None) -> list[ObjectProperties]:
        return self._transport.run(properties_flow(urn, guid, region or self._region, self._polling))

    def iter_object_tree(self, urn: str, guid: str, region: str | None = None) -> Iterator[TreeEntry]:
        """The object tree as flat entries, parsed while the body arrives. The request is made now (a 404
        raises here); the body is read as the iterator is consumed."""
        path = f"{BASE}/{urn}/metadata/{guid}"
        response = self._transport.run(
            _metadata_get(path, "md_tree", region or self._region, self._polling, stream=True)
        )
        if response.status_code == 413:
            raise error_from_response(response)  # over the forceget ceiling: nothing more to try
        return tree_entries_from_chunks(response_chunks(response))

    def iter_properties(self, urn: str, guid: str, region: str | None = None) -> Iterator[ObjectProperties]:
        """Every object's properties, one at a time: parsed while the body arrives, or (past the forceget
        ceiling) a properties:query page at a time. The first request is made now (a 404 raises here)."""
        region = region or self._region
        path = f"{BASE}/{urn}/metadata/{guid}/properties"
        response = self._transport.run(
            _metadata_get(path, "md_properties", region, self._polling, stream=True)
        )
        if response.status_code != 413:
            return properties_from_chunks(response_chunks(response))
        first = self._transport.run(properties_page_flow(urn, guid, region, self._polling, 0))
        return self._query_pages(urn, guid, region, *first)

    def _query_pages(
        self, urn: str, guid: str, region: str, page: list[ObjectProperties], more: bool
    ) -> Iterator[ObjectProperties]:
        offset = 0
        while True:
            yield from page
            offset += len(page)
            if not more:
                return
            page, more = self._transport.run(properties_page_flow(urn, guid, region, self._polling, offset))

    def thumbnail(
        self, urn: str, region: str | None = None, width: int | None = 200, height: int | None = None
    ) -> bytes:
        return self._transport.run(thumbnail_flow(urn, region or self._region, width, height))

    def formats(self) -> dict[str, list[str]]:
        return self._transport.run(formats_flow())


class AsyncDerivativeClient:
    """Model Derivative, awaited: the same flows as DerivativeClient, driven without blocking the loop."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport
        self._region = transport.config.region
        self._polling = Polling.from_config(transport.config)

    async def start_job(
        self,
        urn: str,
        *,
        region: str | None = None,
        formats: list[dict[str, Any]] | None = None,
        force: bool = False,
        workflow: str | None = None,
        root_filename: str | None = None,
    ) -> JobAccepted:
        return await self._transport.run(
            start_job_flow(urn, region or self._region, formats, force, workflow, root_filename)
        )

    async def manifest(self, urn: str, region: str | None = None) -> Manifest:
        return await self._transport.run(manifest_flow(urn, region or self._region))

    async def delete_manifest(self, urn: str, region: str | None = None) -> None:
        await self._transport.run(delete_manifest_flow(urn, region or self._region))

    async def views(self, urn: str, region: str | None = None) -> list[ModelView]:
        return await self._transport.run(views_flow(urn, region or self._region))

    async def object_tree(self, urn: str, guid: str, region: str | None = None) -> list[TreeNode]:
        return await self._transport.run(object_tree_flow(urn, guid, region or self._region, self._polling))

    async def properties(self, urn: str, guid: str, region: str | None = None) -> list[ObjectProperties]:
        return await self._transport.run(properties_flow(urn, guid, region or self._region, self._polling))

    async def thumbnail(
        self, urn: str, region: str | None = None, width: int | None = 200, height: int | None = None
    ) -> bytes:
        return await self._transport.run(thumbnail_flow(urn, region or self._region, width, height))

    async def formats(self) -> dict[str, list[str]]:
        return await self._transport.run(formats_flow())
