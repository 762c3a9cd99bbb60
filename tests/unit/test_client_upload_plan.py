"""aps_client upload planning and source reading, webhook signatures and the 202/413 flows (pure logic)."""

from __future__ import annotations

import hashlib
import hmac
import io
import os

import httpx
import pytest
from pydantic import SecretStr

from aps_client import APSConfig
from aps_client.derivative import Polling, properties_flow
from aps_client.errors import APSConflictError, APSStillProcessingError, APSUploadError
from aps_client.transport import RequestSpec, Sleep
from aps_client.upload import (
    BufferPool,
    MultipartUpload,
    Part,
    PartBody,
    PartReader,
    buffer_size,
    plan_parts,
    read_into,
)
from aps_client.webhooks import check_workflow, create_hook_flow, verify_signature

MIB = 1024 * 1024


def test_plan_parts_splits_on_part_size_with_one_based_numbers() -> None:
    parts = plan_parts(12 * MIB, 5 * MIB)
    assert parts == [Part(1, 0, 5 * MIB), Part(2, 5 * MIB, 5 * MIB), Part(3, 10 * MIB, 2 * MIB)]
    assert plan_parts(10 * MIB, 5 * MIB)[-1] == Part(2, 5 * MIB, 5 * MIB)  # exact multiple: no empty tail


def test_plan_parts_zero_bytes_is_one_empty_part() -> None:
    assert plan_parts(0, 5 * MIB) == [Part(1, 0, 0)]


def test_plan_parts_refuses_too_many_parts_before_any_network_call() -> None:
    with pytest.raises(ValueError, match="raise the part size"):
        plan_parts(10_001 * 5 * MIB, 5 * MIB)
    with pytest.raises(ValueError, match="size must be >= 0"):
        plan_parts(-1, 5 * MIB)


class Trickle(io.RawIOBase):
    """A stream that returns at most 7 bytes per read, like a network body can."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.reads = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        self.reads += 1
        return self._data.read(min(n, 7) if n >= 0 else 7)


def test_read_into_collects_short_reads() -> None:
    stream = Trickle(bytes(range(50)))
    buffer = bytearray(30)
    assert read_into(stream, memoryview(buffer)) == 30
    assert buffer == bytes(range(30))
    assert read_into(stream, memoryview(buffer)) == 20  # end of stream: what is left
    assert buffer[:20] == bytes(range(30, 50))


def _read(reader: PartReader, part: Part) -> bytes:
    return bytes(reader.read_into(part, bytearray(100)))


def test_part_reader_skips_finished_parts_by_reading_and_discarding() -> None:
    data = bytes(range(256)) * 4
    parts = plan_parts(len(data), 100)
    reader = PartReader(Trickle(data), len(data), first_offset=parts[3].offset)
    assert _read(reader, parts[3]) == data[300:400]
    assert _read(reader, parts[7]) == data[700:800]  # parts 5-7 skipped
    assert _read(reader, parts[10]) == data[1000:1024]
    reader.check_exhausted()


def test_part_body_is_re_iterable_and_never_copies_the_part() -> None:
    buffer = bytearray(os.urandom(3 * 1024 * 1024 + 5))
    body = PartBody(memoryview(buffer))
    first = list(body)
    assert [len(c) for c in first] == [1024 * 1024] * 3 + [5]
    assert all(isinstance(c, memoryview) and c.obj is buffer for c in first)
    assert b"".join(body) == buffer  # a retry iterates again from the start


def test_a_part_buffer_is_as_big_as_the_biggest_part_to_send() -> None:
    assert buffer_size(plan_parts(20_000, 5 * MIB)) == 20_000  # a small file: no 5 MiB buffer
    assert buffer_size(plan_parts(12 * MIB, 5 * MIB)) == 5 * MIB
    assert buffer_size(plan_parts(12 * MIB, 5 * MIB)[2:]) == 2 * MIB  # a resumed upload's last part only
    assert buffer_size(plan_parts(0, 5 * MIB)) == 0


def test_buffer_pool_reuses_at_most_count_buffers() -> None:
    pool = BufferPool(count=2, size=10)
    a, b = pool.take(), pool.take()
    assert a is not b
    assert len(a) == 10
    pool.give(a)
    assert pool.take() is a  # no third buffer: the given-back one is reused


def test_part_reader_reopens_a_callable_source_at_the_first_unfinished_byte() -> None:
    data = b"abcdefghij" * 10
    opened: list[int] = []

    def open_at(offset: int) -> io.BytesIO:
        opened.append(offset)
        return io.BytesIO(data[offset:])

    reader = PartReader(open_at, len(data), first_offset=40)
    assert _read(reader, Part(5, 40, 20)) == data[40:60]
    assert opened == [40]
    reader.check_exhausted()


def test_part_reader_reports_a_source_shorter_or_longer_than_declared() -> None:
    reader = PartReader(io.BytesIO(b"x" * 10), 20, 0)
    with pytest.raises(APSUploadError, match="source ended at byte 10"):
        _read(reader, Part(1, 0, 20))
    longer = PartReader(io.BytesIO(b"x" * 30), 20, 0)
    _read(longer, Part(1, 0, 20))
    with pytest.raises(APSUploadError, match="more than the declared 20 bytes"):
        longer.check_exhausted()


def test_verify_signature() -> None:
    body = b'{"version":"1.0","payload":{}}'
    digest = hmac.new(b"hook-secret", body, hashlib.sha1).hexdigest()
    assert verify_signature(body, f"sha1hash={digest}", "hook-secret")
    assert verify_signature(body, digest.upper(), "hook-secret")
    assert not verify_signature(body + b" ", f"sha1hash={digest}", "hook-secret")
    assert not verify_signature(body, f"sha1hash={digest}", "other-secret")
    assert not verify_signature(body, "", "hook-secret")


def test_workflow_ids_are_checked() -> None:
    assert check_workflow("aps-pipeline-1") == "aps-pipeline-1"
    with pytest.raises(ValueError, match="workflow must be"):
        check_workflow("has space")
    with pytest.raises(ValueError, match="workflow must be"):
        check_workflow("x" * 37)


def _answer(status: int, body: dict | None = None) -> httpx.Response:
    return httpx.Response(status, json=body or {}, request=httpx.Request("GET", "http://aps.test/"))


POLL = Polling(initial=1.0, maximum=3.0, timeout=3600)


def test_properties_flow_polls_202_then_falls_back_to_forceget_then_query() -> None:
    flow = properties_flow("URN", "guid", "EMEA", POLL)
    step = next(flow)
    assert isinstance(step, RequestSpec)
    assert step.headers == {"region": "EMEA"}
    assert not step.params
    assert flow.send(_answer(202, {"result": "success"})) == Sleep(1.0)
    assert isinstance(flow.send(None), RequestSpec)
    assert flow.send(_answer(202)) == Sleep(2.0)
    flow.send(None)
    assert flow.send(_answer(202)) == Sleep(3.0)  # capped
    flow.send(None)
    forceget = flow.send(_answer(413, {"diagnostic": "Please use the 'forceget' parameter"}))
    assert forceget.params == {"forceget": "true"}
    assert forceget.family == "md_forceget"
    query = flow.send(_answer(413, {"diagnostic": "too large"}))
    assert query.method == "POST"
    assert query.path.endswith("/properties:query")
    assert query.json["pagination"] == {"offset": 0, "limit": 1000}
    assert "query" not in query.json  # no filter: every object
    page = {
        "data": {"collection": [{"objectid": i, "name": f"o{i}"} for i in range(1000)]},
        "pagination": {"offset": 0, "limit": 1000, "totalResults": 1500},
    }
    second = flow.send(_answer(200, page))
    assert second.json["pagination"] == {"offset": 1000, "limit": 1000}
    last = {
        "data": {"collection": [{"objectid": i, "name": f"o{i}"} for i in range(1000, 1500)]},
        "pagination": {"offset": 1000, "limit": 1000, "totalResults": 1500},
    }
    with pytest.raises(StopIteration) as done:
        flow.send(_answer(200, last))
    assert [p.objectid for p in done.value.value] == list(range(1500))


def test_polling_gives_up_after_the_timeout() -> None:
    flow = properties_flow("URN", "guid", "US", Polling(initial=1.0, maximum=1.0, timeout=0.5))
    next(flow)
    with pytest.raises(APSStillProcessingError):
        flow.send(_answer(202))


def _hooks_page(*hooks: dict) -> httpx.Response:
    return _answer(200, {"links": {"next": None}, "data": list(hooks)})


def test_create_hook_409_returns_the_existing_hook() -> None:
    """A retried POST whose first attempt created the hook gets 409: the existing hook is the answer."""
    flow = create_hook_flow("http://cb.test/hook", "wf-1", "US", None, None)
    post = next(flow)
    assert (post.method, post.json["callbackUrl"]) == ("POST", "http://cb.test/hook")
    assert 409 in post.accept
    listing = flow.send(_answer(409, {"id": "x", "status": 409, "code": "CONFLICT_ERROR"}))
    assert listing.method == "GET"
    other = {"hookId": "h-other", "callbackUrl": "http://cb.test/hook", "scope": {"workflow": "wf-2"}}
    mine = {"hookId": "h-mine", "callbackUrl": "http://cb.test/hook", "scope": {"workflow": "wf-1"}}
    with pytest.raises(StopIteration) as done:
        flow.send(_hooks_page(other, mine))
    assert done.value.value == "h-mine"


def test_create_hook_409_without_a_matching_hook_is_a_conflict() -> None:
    flow = create_hook_flow("http://cb.test/hook", "wf-1", "US", None, None)
    next(flow)
    flow.send(_answer(409, {"code": "CONFLICT_ERROR"}))
    with pytest.raises(APSConflictError):
        flow.send(_hooks_page())


SIGNED = "https://s3.test/part?uploadId=u1&partNumber=1&X-Amz-Signature=SECRETSIGNATURE"


class _OneAnswer:
    """A transport stand-in whose every call gets the same answer."""

    def __init__(self, body: dict) -> None:
        self.config = APSConfig(client_id="cid", client_secret=SecretStr("s"), base_url="http://aps.test")
        self.body = body

    def send(self, spec: RequestSpec) -> httpx.Response:
        return httpx.Response(200, json=self.body, request=httpx.Request(spec.method, "http://aps.test/"))


def test_upload_url_error_does_not_carry_the_signed_urls() -> None:
    # Two parts wanted, one URL returned: an error, but it must not show the signed URL it got.
    transport = _OneAnswer({"uploadKey": "UPLOADKEY", "urls": [SIGNED], "urlExpiration": "2030-01-01"})
    upload = MultipartUpload(
        transport,  # type: ignore[arg-type]
        "bucket",
        "big.bin",
        io.BytesIO(),
        10 * MIB,
        region="US",
    )
    with pytest.raises(APSUploadError) as caught:
        upload.urls.get(1)
    error = caught.value
    shown = f"{error} {error!r} {error.body} {error.args} {error.url}"
    assert "OSS returned 1 upload URLs for 2 parts" in str(error)
    assert "SECRETSIGNATURE" not in shown
    assert "s3.test" not in shown
    assert "UPLOADKEY" not in shown
    assert error.body == {"urlExpiration": "2030-01-01"}


def test_request_bodies_stay_out_of_the_request_repr() -> None:
    spec = RequestSpec("PATCH", "/webhooks/v1/hooks/h1", json={"token": "HOOK-SECRET"}, form={"k": "FORMVAL"})
    assert "HOOK-SECRET" not in repr(spec)
    assert "FORMVAL" not in repr(spec)
    assert spec.json == {"token": "HOOK-SECRET"}  # still sent, only not shown
