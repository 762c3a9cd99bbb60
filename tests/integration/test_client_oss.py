"""aps_client OSS against the emulator over HTTP: buckets, object details and the multipart upload."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from aps_client import APSClient, UploadState, clear_token_cache, from_urn, to_urn
from aps_client.errors import APSForbiddenError, APSNotFoundError, APSUploadError
from aps_devstack import EmulatorServer, S3Server
from tests.fixtures.client import aps, client_config, stat, upload_bytes
from tests.fixtures.stack import TWO_APPS

MIB = 1024 * 1024


class Interrupted(Exception):
    """Raised from on_progress to simulate a task killed in the middle of an upload."""


def random_file(tmp_path: Path, size: int) -> Path:
    path = tmp_path / "payload.bin"
    with path.open("wb") as f:
        f.write(os.urandom(size))
    return path


def sha1_of(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def test_ensure_bucket_twice_takes_the_409_path(aps: APSClient, emulator: EmulatorServer) -> None:
    first = aps.oss.ensure_bucket("twice-bucket", policy="temporary")
    second = aps.oss.ensure_bucket("twice-bucket")
    assert first.bucket_key == second.bucket_key == "twice-bucket"
    assert second.bucket_owner == emulator.client_id
    assert second.policy_key == "temporary"
    assert stat(emulator, "bucket_create 409", "responses") == 1


def test_bucket_of_another_application_is_a_clear_forbidden_error(two_app_emulator: EmulatorServer) -> None:
    two_app_emulator.reset()
    clear_token_cache()
    (a_id, a_secret), (b_id, b_secret) = TWO_APPS.items()
    with APSClient(client_config(two_app_emulator, a_id, a_secret)) as app_a:
        app_a.oss.ensure_bucket("shared-name")
    with APSClient(client_config(two_app_emulator, b_id, b_secret)) as app_b:
        with pytest.raises(APSForbiddenError) as caught:
            app_b.oss.ensure_bucket("shared-name")
        with pytest.raises(APSForbiddenError):
            app_b.oss.bucket_details("shared-name")
    message = str(caught.value)
    assert "shared-name" in message
    assert "another" in message
    assert caught.value.status_code == 403
    assert b_secret not in message


def test_missing_bucket_and_object_are_not_found(aps: APSClient) -> None:
    with pytest.raises(APSNotFoundError):
        aps.oss.bucket_details("no-such-bucket")
    aps.oss.ensure_bucket("some-bucket")
    with pytest.raises(APSNotFoundError):
        aps.oss.object_details("some-bucket", "no/such.ifc")


def test_multipart_upload_from_a_file(aps: APSClient, emulator: EmulatorServer, tmp_path: Path) -> None:
    path = random_file(tmp_path, 12 * MIB)
    aps.oss.ensure_bucket("upload-bucket")
    progress: list[UploadState] = []
    with path.open("rb") as source:
        details = aps.oss.upload(
            "upload-bucket", "dir/model 1.rvt", source, path.stat().st_size, on_progress=progress.append
        )
    assert details.size == 12 * MIB
    assert details.sha1 == sha1_of(path)
    assert details.object_key == "dir/model 1.rvt"
    assert from_urn(to_urn(details.object_id)) == "urn:adsk.objects:os.object:upload-bucket/dir/model 1.rvt"
    again = aps.oss.object_details("upload-bucket", "dir/model 1.rvt")
    assert (again.size, again.sha1) == (details.size, details.sha1)
    assert stat(emulator, "upload_part") == 3  # 5 + 5 + 2 MiB
    assert stat(emulator, "upload_urls") == 1  # one batch of URLs is enough for 3 parts
    assert progress[0].upload_key is not None
    assert progress[0].completed_parts == {}
    assert sorted(progress[-1].completed_parts) == [1, 2, 3]


def test_upload_streams_an_s3_body(aps: APSClient, s3_server: S3Server, s3_bucket: str) -> None:
    data = os.urandom(6 * MIB + 123)
    s3 = s3_server.client()
    s3.put_object(Bucket=s3_bucket, Key="in/model.ifc", Body=data)
    body = s3.get_object(Bucket=s3_bucket, Key="in/model.ifc")
    aps.oss.ensure_bucket("from-s3")
    details = aps.oss.upload("from-s3", "model.ifc", body["Body"], body["ContentLength"])
    assert details.size == len(data)
    assert details.sha1 == hashlib.sha1(data).hexdigest()


def test_empty_file_uploads_as_one_part(aps: APSClient, emulator: EmulatorServer) -> None:
    aps.oss.ensure_bucket("empty-bucket")
    details = aps.oss.upload("empty-bucket", "empty.obj", io.BytesIO(b""), 0)
    assert details.size == 0
    assert details.sha1 == hashlib.sha1(b"").hexdigest()
    assert stat(emulator, "upload_part") == 1


def test_expired_signed_urls_are_refreshed(aps: APSClient, emulator: EmulatorServer, tmp_path: Path) -> None:
    path = random_file(tmp_path, 11 * MIB)
    aps.oss.ensure_bucket("refresh-bucket")
    expired = []

    def expire_urls_once(state: UploadState) -> None:
        # Called once the upload key (and the first URLs) are known, before any part is sent.
        if not expired:
            expired.append(True)
            emulator.advance_clock(3600)  # every signed URL handed out so far is now stale

    with path.open("rb") as source:
        details = aps.oss.upload(
            "refresh-bucket", "late.bin", source, path.stat().st_size, on_progress=expire_urls_once
        )
    assert details.sha1 == sha1_of(path)
    assert stat(emulator, "upload_part 403", "responses") >= 1
    assert stat(emulator, "upload_urls") >= 2


def test_urls_that_never_work_give_an_upload_error(emulator: EmulatorServer) -> None:
    clear_token_cache()
    # Every URL expires a millisecond after it is signed and every request takes 5 ms: always stale.
    emulator.configure(url_lifetime_seconds=0.001, latency_ms=5)
    with APSClient(client_config(emulator, upload_max_url_refreshes=2)) as aps:
        aps.oss.ensure_bucket("doomed-bucket")
        with pytest.raises(APSUploadError) as caught:
            aps.oss.upload("doomed-bucket", "x.bin", io.BytesIO(b"x" * 100), 100)
    assert caught.value.status_code == 403
    assert "refreshes" in str(caught.value)
    assert stat(emulator, "upload_part 403", "responses") == 3  # first try + 2 refreshes
    assert stat(emulator, "upload_urls") == 3


def test_interrupted_upload_resumes_without_resending_finished_parts(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    clear_token_cache()
    path = random_file(tmp_path, 17 * MIB)  # 4 parts
    size = path.stat().st_size
    saved: list[UploadState] = []

    def save_then_die_after_two_parts(state: UploadState) -> None:
        saved.append(state)
        if len(state.completed_parts) == 2:
            raise Interrupted

    with APSClient(client_config(emulator, upload_parallelism=1)) as aps:
        aps.oss.ensure_bucket("resume-bucket")
        with path.open("rb") as source, pytest.raises(Interrupted):
            aps.oss.upload(
                "resume-bucket", "big.bin", source, size, on_progress=save_then_die_after_two_parts
            )
        with pytest.raises(APSNotFoundError):
            aps.oss.object_details("resume-bucket", "big.bin")  # not completed: invisible

        state = UploadState.model_validate_json(saved[-1].model_dump_json())  # as if read back from storage
        assert sorted(state.completed_parts) == [1, 2]
        parts_before = stat(emulator, "upload_part")
        opened_at: list[int] = []

        def open_at(offset: int):  # type: ignore[no-untyped-def]
            opened_at.append(offset)
            source = path.open("rb")
            source.seek(offset)
            return source

        details = aps.oss.upload("resume-bucket", "big.bin", open_at, size, state=state)
    assert details.sha1 == sha1_of(path)
    assert details.size == size
    assert opened_at == [10 * MIB]  # reopened at the first unfinished byte
    assert stat(emulator, "upload_part") - parts_before == 2  # only parts 3 and 4 were sent again
    assert sorted(state.completed_parts) == [1, 2, 3, 4]


def test_resume_from_a_plain_stream_reads_past_finished_parts(
    aps: APSClient, emulator: EmulatorServer
) -> None:
    data = os.urandom(12 * MIB)
    aps.oss.ensure_bucket("resume-stream")
    saved: list[UploadState] = []

    def die_after_first_part(state: UploadState) -> None:
        saved.append(state)
        if state.completed_parts:
            raise Interrupted

    config = aps.config.model_copy(update={"upload_parallelism": 1})
    with APSClient(config) as serial, pytest.raises(Interrupted):
        serial.oss.upload(
            "resume-stream", "s.bin", io.BytesIO(data), len(data), on_progress=die_after_first_part
        )
    before = stat(emulator, "upload_part")
    details = aps.oss.upload("resume-stream", "s.bin", io.BytesIO(data), len(data), state=saved[-1])
    assert details.sha1 == hashlib.sha1(data).hexdigest()
    assert stat(emulator, "upload_part") - before == 2


def test_source_shorter_than_declared_is_an_upload_error(aps: APSClient) -> None:
    aps.oss.ensure_bucket("short-bucket")
    with pytest.raises(APSUploadError, match="source ended"):
        aps.oss.upload("short-bucket", "short.bin", io.BytesIO(b"abc"), 10)


def test_region_mismatch_is_not_found(aps: APSClient) -> None:
    aps.oss.ensure_bucket("emea-bucket", region="EMEA")
    assert aps.oss.bucket_details("emea-bucket", region="EMEA").bucket_key == "emea-bucket"
    with pytest.raises(APSNotFoundError):
        aps.oss.bucket_details("emea-bucket", region="US")


def test_upload_bytes_helper_gives_a_urn(aps: APSClient) -> None:
    urn = upload_bytes(aps, "helper-bucket", "cube.obj", b"o Cube\n")
    assert from_urn(urn) == "urn:adsk.objects:os.object:helper-bucket/cube.obj"


def test_token_without_the_needed_scope_is_forbidden(emulator: EmulatorServer) -> None:
    clear_token_cache()
    with (
        APSClient(client_config(emulator, scopes=("data:read",))) as aps,
        pytest.raises(APSForbiddenError) as caught,
    ):
        aps.oss.ensure_bucket("scope-bucket")
    assert caught.value.status_code == 403
    assert "bucket:create" in str(caught.value)
