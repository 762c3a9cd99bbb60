"""Signed-S3 multipart upload to OSS (aps-api.md §2.4-2.6 and §3), kept in its own helper like the APS SDKs.

1. Plan parts: `part_size` bytes each (≥ 5 MiB), numbered from 1; a 0-byte object is one empty part.
2. Ask OSS for signed PUT URLs lazily, at most 25 per request, reusing the `uploadKey` of the first answer.
3. Read parts from the source in order (it may be a non-seekable stream such as an S3 body) into reused
   part buffers and PUT them from a small thread pool. There are `parallelism + 1` buffers (one being
   filled, the rest being sent), so memory stays ≈ part_size * (parallelism + 1) whatever the object size.
4. A 403 from S3 means the URL expired: fetch fresh URLs for the same uploadKey (a bounded number of times).
   5xx and transport errors are retried by the transport's policy.
5. Record each finished part in the `UploadState` and call `on_progress(snapshot)`; a caller that persists
   the snapshot can resume later: finished parts are skipped (the source is reopened at the first unfinished
   byte when it is an `open_at(offset)` callable, otherwise read and discarded).
6. POST completion with the expected size; a 200 whose body says `status: "error"` is a failed upload.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO

from aps_client.errors import APSError, APSUploadError
from aps_client.models import ObjectDetails, UploadState
from aps_client.oss_requests import object_details_flow, object_path, region_headers
from aps_client.transport import RequestSpec, SyncTransport

log = logging.getLogger("aps_client.upload")

Source = Callable[[int], BinaryIO]  # open_at(offset) -> stream positioned at `offset`
IO_CHUNK = 1024 * 1024  # reads from the source and writes to the socket go in pieces of at most this


@dataclass(frozen=True)
class Part:
    number: int  # 1-based, as S3 and OSS count
    offset: int
    length: int


def plan_parts(size: int, part_size: int, max_parts: int = 10_000) -> list[Part]:
    """Split `size` bytes into parts of `part_size` (the last one shorter). 0 bytes -> one empty part."""
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    if part_size <= 0:
        raise ValueError(f"part_size must be > 0, got {part_size}")
    count = max(1, -(-size // part_size))
    if count > max_parts:
        raise ValueError(
            f"{size} bytes need {count} parts of {part_size} bytes, more than the {max_parts} allowed: "
            f"raise the part size"
        )
    return [Part(n + 1, n * part_size, min(part_size, size - n * part_size)) for n in range(count)]


def read_into(stream: BinaryIO, buffer: memoryview) -> int:
    """Fill `buffer` from `stream`, at most 1 MiB per read (network bodies return short reads, and small
    reads keep temporary allocations small); returns the bytes read, fewer only at end of stream."""
    filled = 0
    while filled < len(buffer):
        chunk = stream.read(min(IO_CHUNK, len(buffer) - filled))
        if not chunk:
            break
        buffer[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
    return filled


class PartBody:
    """A part's bytes for httpx: re-iterable slices of a reused buffer (a retry re-sends from the start),
    never copied whole. The caller sets Content-Length so httpx does not switch to chunked encoding."""

    def __init__(self, view: memoryview) -> None:
        self.view = view

    def __iter__(self) -> Iterator[memoryview]:
        for start in range(0, len(self.view), IO_CHUNK):
            yield self.view[start : start + IO_CHUNK]


def buffer_size(parts: list[Part]) -> int:
    """The size of a part buffer for sending `parts`: their biggest. A 20 kB file's buffer is 20 kB, not a
    zeroed `part_size` (5 MiB or more: CPU and page faults per file for bytes never used)."""
    return max((part.length for part in parts), default=0)


class BufferPool:
    """At most `count` part-sized buffers, allocated on first need and then reused. Taking one blocks
    until a sent part gives its buffer back, which is what bounds the upload's memory. Reusing them (rather
    than allocating a fresh `bytes` per part) also keeps the heap from fragmenting over thousands of parts."""

    def __init__(self, count: int, size: int) -> None:
        self._count, self._size, self._made = count, size, 0
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()

    def take(self) -> bytearray:  # called from one thread only (the reader)
        if self._made < self._count:
            self._made += 1
            return bytearray(self._size)
        return self._free.get()

    def give(self, buffer: bytearray) -> None:
        self._free.put(buffer)


class PartReader:
    """Reads the parts still to send, in order, from a file-like source or an open_at(offset) callable."""

    def __init__(self, source: BinaryIO | Source, size: int, first_offset: int) -> None:
        self._size = size
        if callable(source) and not hasattr(source, "read"):
            self._stream: BinaryIO = source(first_offset)
            self._position = first_offset
            self._owned = True
        else:
            self._stream = source  # type: ignore[assignment]
            self._position = 0
            self._owned = False

    def read_into(self, part: Part, buffer: bytearray) -> memoryview:
        """The part's bytes, read into `buffer`; returns the filled view."""
        self._skip_to(part.offset)
        view = memoryview(buffer)[: part.length]
        got = read_into(self._stream, view)
        self._position += got
        if got != part.length:
            raise APSUploadError(
                f"source ended at byte {self._position}, but the upload was declared as {self._size} bytes"
            )
        return view

    def check_exhausted(self) -> None:
        self._skip_to(self._size)
        if self._stream.read(1):
            raise APSUploadError(f"source holds more than the declared {self._size} bytes")

    def close(self) -> None:
        if self._owned and hasattr(self._stream, "close"):
            self._stream.close()

    def _skip_to(self, offset: int) -> None:
        # Finished parts are read and dropped a chunk at a time (never held whole).
        while self._position < offset:
            chunk = self._stream.read(min(IO_CHUNK, offset - self._position))
            if not chunk:
                raise APSUploadError(f"source ended at byte {self._position} while skipping finished parts")
            self._position += len(chunk)


class SignedUrls:
    """Signed PUT URLs per part, fetched in batches of ≤ 25 and replaced when S3 says one expired (403)."""

    def __init__(self, upload: MultipartUpload) -> None:
        self._upload = upload
        self._lock = threading.Lock()
        self._urls: dict[int, tuple[str, int]] = {}  # part number -> (url, batch number)
        self._batch = 0

    def get(self, part_number: int) -> tuple[str, int]:
        with self._lock:
            if part_number not in self._urls:
                self._fetch(part_number)
            return self._urls[part_number]

    def expire(self, batch: int) -> None:
        """Forget every URL of a batch (they were signed together, so they expire together)."""
        with self._lock:
            self._urls = {n: entry for n, entry in self._urls.items() if entry[1] != batch}

    def _fetch(self, first_part: int) -> None:
        up = self._upload
        count = min(up.config.upload_url_batch, up.total_parts - first_part + 1)
        params: dict[str, Any] = {
            "parts": count,
            "firstPart": first_part,
            "minutesExpiration": up.config.upload_url_minutes,
        }
        if up.state.upload_key:
            params["uploadKey"] = up.state.upload_key
        response = up.transport.send(
            RequestSpec(
                "GET", f"{up.path}/signeds3upload", family="oss_upload", params=params, headers=up.headers
            )
        )
        body = response.json()
        urls = body.get("urls") or []
        if len(urls) != count or not body.get("uploadKey"):
            # The URLs carry their signatures: keep them (and the uploadKey) out of the error.
            summary = {k: v for k, v in body.items() if k not in ("urls", "uploadKey")}
            raise APSUploadError(
                f"OSS returned {len(urls)} upload URLs for {count} parts",
                body=summary,
                status_code=response.status_code,
                method="GET",
                url=f"{up.path}/signeds3upload",
            )
        self._batch += 1
        for index, url in enumerate(urls):
            self._urls[first_part + index] = (url, self._batch)
        up.set_upload_key(body["uploadKey"])


class MultipartUpload:
    def __init__(
        self,
        transport: SyncTransport,
        bucket_key: str,
        object_key: str,
        source: BinaryIO | Source,
        size: int,
        *,
        region: str,
        content_type: str | None = None,
        state: UploadState | None = None,
        on_progress: Callable[[UploadState], None] | None = None,
    ) -> None:
        self.transport = transport
        self.config = transport.config
        self.bucket_key, self.object_key, self.region = bucket_key, object_key, region
        self.path = object_path(bucket_key, object_key)
        self.headers = region_headers(region)
        self.source, self.size, self.content_type = source, size, content_type
        self.on_progress = on_progress
        # The caller's state object is updated in place, so it is current even if the upload fails.
        self.state = state or UploadState(part_size=self.config.upload_part_size, size=size)
        if self.state.size != size:
            raise ValueError(f"saved upload state is for {self.state.size} bytes, but size is {size}")
        self.parts = plan_parts(size, self.state.part_size, self.config.upload_max_parts)
        self.total_parts = len(self.parts)
        self.urls = SignedUrls(self)
        self._state_lock = threading.Lock()
        self._refreshes: dict[int, int] = {}
        self._failed = threading.Event()  # set when any part fails, so queued parts are not started

    # -- progress bookkeeping -------------------------------------------------------------------------------

    def set_upload_key(self, upload_key: str) -> None:
        with self._state_lock:
            changed = self.state.upload_key != upload_key
            self.state.upload_key = upload_key
            if changed:
                self._report()

    def _part_done(self, part: Part, etag: str) -> None:
        with self._state_lock:
            self.state.completed_parts[part.number] = etag
            self._report()

    def _report(self) -> None:
        # Called with _state_lock held, so callbacks run one at a time and in order.
        if self.on_progress is not None:
            self.on_progress(self.state.model_copy(deep=True))

    # -- the upload -----------------------------------------------------------------------------------------

    def run(self) -> ObjectDetails:
        todo = self._start()
        log.info(
            "uploading %s/%s: %d bytes, %d parts, %d to send",
            self.bucket_key,
            self.object_key,
            self.size,
            self.total_parts,
            len(todo),
        )
        if todo:
            self._send_parts(todo)
        return self._complete()

    def _start(self) -> list[Part]:
        """Get the first URLs (and the uploadKey). A saved uploadKey OSS no longer knows (e.g. older than
        24 h) means starting over."""
        todo = [p for p in self.parts if p.number not in self.state.completed_parts]
        first = todo[0].number if todo else 1
        try:
            self.urls.get(first)
        except APSError as error:
            if not self.state.upload_key or error.status_code not in (400, 404):
                raise
            log.warning("saved upload key refused (%s); starting the upload again", error.status_code)
            with self._state_lock:
                self.state.upload_key = None
                self.state.completed_parts.clear()
            todo = list(self.parts)
            self.urls.get(1)
        return todo

    def _send_parts(self, todo: list[Part]) -> None:
        parallelism = self.config.upload_parallelism
        # One buffer per sending thread plus one being filled: memory <= part_size * (parallelism + 1).
        buffers = BufferPool(min(parallelism + 1, len(todo)), buffer_size(todo))
        failed = self._failed
        reader = PartReader(self.source, self.size, todo[0].offset)
        pool = ThreadPoolExecutor(parallelism, thread_name_prefix="aps-upload")
        futures: list[Future[None]] = []
        try:
            for part in todo:
                buffer = buffers.take()
                if failed.is_set():
                    break  # a part failed: stop reading; the parts in flight finish below, then we raise
                view = reader.read_into(part, buffer)
                future = pool.submit(self._put_part, part, view)
                future.add_done_callback(lambda f, b=buffer: self._part_finished(f, b, buffers))
                futures.append(future)
                del view, buffer  # the buffer now belongs to the sending thread until it gives it back
            else:
                reader.check_exhausted()
        except BaseException:
            failed.set()
            raise
        finally:
            # Parts in flight finish (and count in the state); after a failure, queued ones are dropped.
            pool.shutdown(wait=True, cancel_futures=failed.is_set())
            reader.close()
        for future in futures:
            if not future.cancelled() and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]
        missing = [p.number for p in todo if p.number not in self.state.completed_parts]
        if missing:  # cannot happen without an error above; never complete an upload with holes
            raise APSUploadError(f"parts {missing[:10]} of {self.object_key!r} were not uploaded")

    def _part_finished(self, future: Future[None], buffer: bytearray, buffers: BufferPool) -> None:
        if future.cancelled() or future.exception() is not None:
            self._failed.set()
        buffers.give(buffer)

    def _put_part(self, part: Part, data: memoryview) -> None:
        if self._failed.is_set():
            return  # another part failed: do not start new work (this part stays unfinished in the state)
        while True:
            url, batch = self.urls.get(part.number)
            try:
                response = self.transport.send(
                    RequestSpec(
                        "PUT",
                        url,
                        content=PartBody(data),
                        headers={"Content-Length": str(len(data))},
                        auth=False,
                        accept=frozenset({403}),
                    )
                )
            except APSError as error:
                raise APSUploadError(
                    f"part {part.number} of {self.object_key!r} failed after retries: {error.message}",
                    status_code=error.status_code,
                    body=error.body,
                    request_id=error.request_id,
                    method=error.method,
                    url=error.url,
                ) from error
            if response.status_code != 403:
                self._part_done(part, response.headers.get("etag", "").strip('"'))
                return
            refreshes = self._refreshes.get(part.number, 0) + 1
            self._refreshes[part.number] = refreshes
            if refreshes > self.config.upload_max_url_refreshes:
                raise APSUploadError(
                    f"S3 still refuses the signed URL for part {part.number} after {refreshes - 1} refreshes",
                    status_code=403,
                    method="PUT",
                )
            log.info("signed URL for part %d expired (403); fetching fresh URLs", part.number)
            self.urls.expire(batch)

    def _complete(self) -> ObjectDetails:
        headers = dict(self.headers)
        if self.content_type:
            headers["x-ads-meta-Content-Type"] = self.content_type
        response = self.transport.send(
            RequestSpec(
                "POST",
                f"{self.path}/signeds3upload",
                family="oss_upload",
                headers=headers,
                json={"uploadKey": self.state.upload_key, "size": self.size},
            )
        )
        body = response.json()
        if body.get("status") == "error":
            bad = [p for p in body.get("parts") or [] if p.get("status") != "Ok"]
            raise APSUploadError(
                f"OSS rejected the upload of {self.object_key!r}: {body.get('reason', 'unknown reason')} "
                f"(size {body.get('size')}, bad parts {[p.get('part') for p in bad]})",
                status_code=response.status_code,
                body=body,
                bad_parts=bad,
            )
        details = ObjectDetails.model_validate(body)
        if details.sha1 is None:
            details = self.transport.run(object_details_flow(self.bucket_key, self.object_key, self.region))
        return details
