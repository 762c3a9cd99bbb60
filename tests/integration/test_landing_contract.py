"""The Landing contract, on every implementation: a bucket of the test S3 server (plain and versioned) and a
local folder. Then what only a local folder must guard against: keys and links that lead out of it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from aps_devstack import S3Server
from aps_landing import (
    Landing,
    LandingError,
    ObjectChanged,
    ObjectGone,
    UnsafeKey,
    read_head,
    read_small,
    sha256_of,
)
from aps_landing.local import LocalLanding
from aps_landing.s3 import S3Landing
from tests.fixtures.pipeline import make_landing, read_object

DATA = bytes(range(256)) * 40  # 10 KiB, not a multiple of any read size used below


@pytest.fixture(params=["s3", "s3-versioned", "local"])
def any_landing(request: pytest.FixtureRequest, tmp_path: Path) -> Landing:
    return make_landing(request.param, request, tmp_path)


def read(landing: Landing, key: str, *args: int, **pins: str | None) -> bytes:
    body = landing.read_range(key, *args, **pins)
    try:
        return body.read()
    finally:
        body.close()


def test_is_a_landing_and_names_its_objects(any_landing: Landing) -> None:
    assert isinstance(any_landing, Landing)
    assert any_landing.location
    url = any_landing.url("incoming/a.ifc")
    assert url.endswith("/incoming/a.ifc")
    assert url.startswith("s3://" if isinstance(any_landing, S3Landing) else "file:///")
    assert any_landing.location in url


def test_put_then_head_gives_etag_size_type_and_user_metadata(
    any_landing: Landing, request: pytest.FixtureRequest
) -> None:
    any_landing.put("in/a.ifc", DATA, content_type="application/x-step", metadata={"project": "p1"})
    head = any_landing.head("in/a.ifc")
    # Only a versioned bucket has versions (an unversioned bucket's "null" is no version).
    assert (head.version_id is not None) == (request.node.callspec.params["any_landing"] == "s3-versioned")
    assert head.key == "in/a.ifc"
    assert head.etag == hashlib.md5(DATA).hexdigest()  # S3's ETag of a simple upload: same bytes, same ETag
    assert head.size == len(DATA)
    assert head.content_type == "application/x-step"
    assert dict(head.metadata) == {"project": "p1"}
    if isinstance(any_landing, LocalLanding):
        assert head.version_id is None
    # Replacing an object changes its ETag (and, in a versioned bucket, its version).
    any_landing.put("in/a.ifc", DATA + b"!")
    replaced = any_landing.head("in/a.ifc")
    assert replaced.etag == hashlib.md5(DATA + b"!").hexdigest()
    assert replaced.size == len(DATA) + 1
    assert dict(replaced.metadata) == {}
    if head.version_id is not None:
        assert replaced.version_id not in (None, head.version_id)
    with pytest.raises(ObjectGone):
        any_landing.head("in/missing.ifc")


def test_delete_removes_one_object_and_a_missing_one_is_no_error(any_landing: Landing) -> None:
    any_landing.put("q/a.ifc", DATA)
    any_landing.put("q/b.ifc", DATA)
    any_landing.delete("q/a.ifc")
    any_landing.delete("q/a.ifc")
    any_landing.delete("q/never-there.ifc")
    assert [item.key for item in any_landing.list("q/")] == ["q/b.ifc"]
    with pytest.raises(ObjectGone):
        any_landing.head("q/a.ifc")


def test_list_gives_every_object_under_a_prefix_in_key_order(any_landing: Landing) -> None:
    keys = ["in/b.obj", "in/a.ifc", "in/sub/c.ifc", "in/sub/deeper/d.obj", "inbox/e.ifc", "out/f.ifc"]
    for index, key in enumerate(keys):
        any_landing.put(key, DATA[: 100 + index])
    any_landing.put("in/folder/", b"")  # a "folder" key: listed by S3, a directory in a folder

    def files(prefix: str) -> list[str]:
        return [o.key for o in any_landing.list(prefix) if not o.key.endswith("/")]

    assert files("in/") == ["in/a.ifc", "in/b.obj", "in/sub/c.ifc", "in/sub/deeper/d.obj"]
    assert files("in") == ["in/a.ifc", "in/b.obj", "in/sub/c.ifc", "in/sub/deeper/d.obj", "inbox/e.ifc"]
    assert files("in/sub/") == ["in/sub/c.ifc", "in/sub/deeper/d.obj"]
    assert files("in/a") == ["in/a.ifc"]
    assert files("nothing/") == []
    assert files("") == sorted(keys)
    listed = {o.key: o for o in any_landing.list("in/")}
    head = any_landing.head("in/b.obj")
    assert (listed["in/b.obj"].etag, listed["in/b.obj"].size) == (head.etag, head.size) == (
        hashlib.md5(DATA[:100]).hexdigest(), 100
    )
    assert listed["in/b.obj"].last_modified is not None


def test_read_range_reads_what_was_asked(any_landing: Landing) -> None:
    any_landing.put("in/a.ifc", DATA)
    any_landing.put("in/empty.ifc", b"")
    assert read(any_landing, "in/a.ifc") == DATA
    assert read(any_landing, "in/a.ifc", 5000) == DATA[5000:]
    assert read(any_landing, "in/a.ifc", 10, 20) == DATA[10:30]
    assert read(any_landing, "in/a.ifc", 10_000, 1000) == DATA[10_000:]  # a range past the end is cut
    assert read(any_landing, "in/a.ifc", 0, 0) == b""
    assert read(any_landing, "in/empty.ifc") == b""
    assert read(any_landing, "in/empty.ifc", 0, 10) == b""
    body = any_landing.read_range("in/a.ifc", 100, 50)
    try:  # read in small pieces, as the upload does
        assert body.read(30) + body.read(30) + body.read(30) == DATA[100:150]
    finally:
        body.close()
    with pytest.raises(ObjectGone):
        any_landing.read_range("in/missing.ifc")


def test_reads_pinned_to_a_replaced_version_never_mix_versions(any_landing: Landing) -> None:
    any_landing.put("in/a.ifc", DATA)
    first = any_landing.head("in/a.ifc")
    assert read(any_landing, "in/a.ifc", 0, 100, etag=first.etag, version_id=first.version_id) == DATA[:100]

    any_landing.put("in/a.ifc", DATA[::-1])
    if first.version_id is not None:
        # A versioned bucket still holds the pinned version: that is what is read.
        assert read(any_landing, "in/a.ifc", etag=first.etag, version_id=first.version_id) == DATA
    else:
        with pytest.raises(ObjectChanged, match="changed since it was discovered"):
            any_landing.read_range("in/a.ifc", etag=first.etag)
    # Unpinned, or pinned to the current version: the new bytes.
    second = any_landing.head("in/a.ifc")
    assert read(any_landing, "in/a.ifc") == DATA[::-1]
    assert read(any_landing, "in/a.ifc", etag=second.etag, version_id=second.version_id) == DATA[::-1]


def test_copy_copies_exactly_the_pinned_version_with_its_metadata(any_landing: Landing) -> None:
    any_landing.put("in/a.ifc", DATA, metadata={"project": "p1"})
    first = any_landing.head("in/a.ifc")
    pins = {"etag": first.etag, "version_id": first.version_id}
    any_landing.copy("in/a.ifc", "q/run/in/a.ifc", **pins, size=first.size)
    copied = any_landing.head("q/run/in/a.ifc")
    assert read_object(any_landing, "q/run/in/a.ifc") == DATA
    assert (copied.etag, copied.size, dict(copied.metadata)) == (first.etag, len(DATA), {"project": "p1"})
    assert read_object(any_landing, "in/a.ifc") == DATA  # the source is untouched

    any_landing.put("in/a.ifc", b"newer bytes")
    if first.version_id is not None:
        any_landing.copy("in/a.ifc", "q/run2/in/a.ifc", etag=first.etag, version_id=first.version_id)
        assert read_object(any_landing, "q/run2/in/a.ifc") == DATA
    else:
        with pytest.raises(ObjectChanged):
            any_landing.copy("in/a.ifc", "q/run2/in/a.ifc", etag=first.etag)
        with pytest.raises(ObjectGone):
            any_landing.head("q/run2/in/a.ifc")  # nothing half-copied is left behind
    with pytest.raises(ObjectChanged):
        any_landing.copy("in/missing.ifc", "q/x.ifc", etag=first.etag)


def test_the_reads_the_steps_build_on(any_landing: Landing) -> None:
    any_landing.put("in/a.ifc", DATA)
    any_landing.put("in/a.ifc.meta.json", b'{"project": "p"}')
    head = any_landing.head("in/a.ifc")
    pins = {"etag": head.etag, "version_id": head.version_id}
    assert read_head(any_landing, "in/a.ifc", head.size, 4096, **pins) == DATA[:4096]
    assert read_head(any_landing, "in/a.ifc", 0, 4096, **pins) == b""
    assert sha256_of(any_landing, "in/a.ifc", **pins) == (hashlib.sha256(DATA).hexdigest(), len(DATA))
    assert read_small(any_landing, "in/a.ifc.meta.json", 1024) == b'{"project": "p"}'
    assert read_small(any_landing, "in/a.ifc", 100) == DATA[:101]  # limit + 1: the caller sees it is too big
    assert read_small(any_landing, "in/none.meta.json", 1024) is None
    any_landing.put("in/empty.meta.json", b"")
    assert read_small(any_landing, "in/empty.meta.json", 1024) == b""


def test_s3_errors_other_than_a_missing_or_changed_object_are_landing_errors(s3_server: S3Server) -> None:
    landing = S3Landing(s3_server.client(), "no-such-bucket-here")
    for attempt in (lambda: list(landing.list("in/")), lambda: landing.read_range("in/a.ifc")):
        with pytest.raises(LandingError, match="NoSuchBucket") as caught:
            attempt()
        assert not isinstance(caught.value, ObjectChanged)  # not "the file changed": the bucket is wrong
        assert caught.value.code == "NoSuchBucket"


# -- a local folder keeps every key inside it ---------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["../outside.ifc", "in/../../outside.ifc", "in/./a.ifc", "/etc/passwd", "in//a.ifc", "", "a\x00b"]
)
def test_a_local_folder_refuses_keys_that_could_leave_it(tmp_path: Path, key: str) -> None:
    root = tmp_path / "landing"
    root.mkdir()
    landing = LocalLanding(root)
    with pytest.raises(UnsafeKey):
        landing.put(key, b"x")
    with pytest.raises(UnsafeKey):
        landing.read_range(key)
    with pytest.raises(UnsafeKey):
        landing.head(key)
    landing.put("in/a.ifc", b"x")
    with pytest.raises(UnsafeKey):
        landing.copy("in/a.ifc", key, etag=landing.head("in/a.ifc").etag)
    assert [p.name for p in tmp_path.iterdir()] == ["landing"]  # nothing was written outside


def test_a_local_folder_does_not_follow_links_out_of_it_or_read_pipes(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.pem").write_bytes(b"private")
    root = tmp_path / "landing"
    (root / "in").mkdir(parents=True)
    (root / "in" / "linked").symlink_to(secret, target_is_directory=True)
    (root / "in" / "pem.ifc").symlink_to(secret / "key.pem")
    os.mkfifo(root / "in" / "pipe.ifc")  # reading a pipe would hang: it is no object
    landing = LocalLanding(root)
    landing.put("in/a.ifc", b"x")

    assert [o.key for o in landing.list("")] == ["in/a.ifc"]
    with pytest.raises(ObjectGone):
        landing.read_range("in/pipe.ifc")
    for key in ("in/linked/key.pem", "in/pem.ifc"):
        with pytest.raises(UnsafeKey):
            landing.read_range(key)
    with pytest.raises(UnsafeKey):
        landing.put("in/linked/new.ifc", b"x")
    assert sorted(os.listdir(secret)) == ["key.pem"]


def test_a_local_folder_must_exist_and_be_absolute(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="does not exist"):
        LocalLanding(tmp_path / "nope")
    with pytest.raises(Exception, match="absolute"):
        LocalLanding("relative/landing")


def test_a_local_folder_hides_unfinished_writes_and_caches_etags_by_mtime(tmp_path: Path) -> None:
    root = tmp_path / "landing"
    root.mkdir()
    landing = LocalLanding(root)
    (root / ".a.ifc.landing-tmp-123").write_bytes(b"half written")  # a put that died midway
    landing.put("a.ifc", DATA)
    assert [o.key for o in landing.list("")] == ["a.ifc"]
    # A file changed in place (same size, new mtime) gets a new ETag: the cache is keyed on mtime and size.
    before = landing.head("a.ifc").etag
    path = root / "a.ifc"
    path.write_bytes(DATA[::-1])
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert landing.head("a.ifc").etag == hashlib.md5(DATA[::-1]).hexdigest() != before
