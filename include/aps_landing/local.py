"""The local-folder landing: files under one directory, for tests and for users without S3.

Keys map to paths under the root ('/' separated). A key that could leave the root is refused (`UnsafeKey`):
an empty, '.' or '..' segment, a NUL, or a path through a symbolic link that leads outside. Symbolic links
are not listed.

What S3 keeps beside an object lives in extended attributes (`user.landing.*`): user metadata, the content
type, and a cache of the ETag. The ETag is the MD5 of the content, as S3 gives for a simple upload, so the
same bytes have the same ETag; it is cached with the file's mtime and size, so a listing hashes a file once,
not on every run. There are no versions (`version_id` is always None); a read or copy pinned to an ETag
checks it on the open file, and writes are atomic (a temporary file renamed into place), so a pinned read
never mixes two versions.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import mimetypes
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from stat import S_ISREG
from typing import BinaryIO

from aps_landing.base import (
    HASH_CHUNK_BYTES,
    AccessRefused,
    LandingError,
    ListedObject,
    ObjectChanged,
    ObjectGone,
    ObjectHead,
    UnsafeKey,
)

_XATTR = "user.landing."
_ETAG_XATTR = _XATTR + "etag"  # "<inode>:<mtime_ns>:<size>:<md5>"
_TYPE_XATTR = _XATTR + "content-type"
_META_XATTR = _XATTR + "meta."
_TEMP_MARK = ".landing-tmp-"  # temporary files of an unfinished put or copy; never listed


class _Window(io.RawIOBase):
    """At most `remaining` bytes of an open file, from where it is positioned."""

    def __init__(self, file: BinaryIO, remaining: int) -> None:
        super().__init__()
        self._file = file
        self._remaining = remaining

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self._remaining)
        data = self._file.read(count) if count else b""
        buffer[: len(data)] = data
        self._remaining -= len(data)
        return len(data)

    def close(self) -> None:
        self._file.close()
        super().close()


def _open_file(path: Path) -> BinaryIO:
    # O_NOFOLLOW: a link put in place after the key was checked is refused, not followed; O_NONBLOCK: a pipe
    # put there cannot hang the reader.
    return os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb")


def _stamp(stat: os.stat_result) -> str:
    """What a cached ETag is valid for: this file (inode) with this mtime and size."""
    return f"{stat.st_ino}:{stat.st_mtime_ns}:{stat.st_size}:"


def _code(error: OSError) -> str:
    return errno.errorcode.get(error.errno or 0, "")


def _xattrs(target: int | str) -> dict[str, bytes]:
    """This landing's extended attributes of a file ({} where the file system keeps none)."""
    try:
        names = [n for n in os.listxattr(target) if n.startswith(_XATTR)]
        return {n: os.getxattr(target, n) for n in names}
    except OSError:
        return {}


class LocalLanding:
    """A landing folder. `root` must be an existing directory, given as an absolute path."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        path = Path(root)
        if not path.is_absolute():
            raise LandingError(f"the landing folder must be an absolute path, got {str(root)!r}")
        if not path.is_dir():
            raise LandingError(f"the landing folder {str(root)!r} does not exist or is not a directory")
        self._root = path.resolve()

    def __repr__(self) -> str:
        return f"LocalLanding({str(self._root)!r})"

    @property
    def location(self) -> str:
        return str(self._root)

    def url(self, key: str) -> str:
        return f"{self._root.as_uri()}/{key}"

    # --- keys and paths -------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        """The path of `key` under the root; `UnsafeKey` if it could lead anywhere else."""
        segments = key.split("/")
        if key.endswith("/"):
            segments = segments[:-1]  # a "folder" key
        if not key or "\x00" in key or any(s in ("", ".", "..") for s in segments):
            raise UnsafeKey(f"{key!r}: a local folder cannot hold a key with an empty, '.' or '..' segment")
        if any(_TEMP_MARK in s for s in segments):
            raise UnsafeKey(f"{key!r}: names containing {_TEMP_MARK!r} are the landing's temporary files")
        path = self._root.joinpath(*segments)
        real = Path(os.path.realpath(path))
        if real != self._root and self._root not in real.parents:
            raise UnsafeKey(f"{key!r} leads outside the landing folder (through a symbolic link)")
        return path

    def _key(self, path: Path) -> str:
        return path.relative_to(self._root).as_posix()

    # --- ETags ------------------------------------------------------------------------------------------

    @staticmethod
    def _etag(fd: int, stat: os.stat_result) -> str:
        """The MD5 of the open file's content, from the cache when mtime and size still match."""
        stamp = _stamp(stat)
        try:
            cached = os.getxattr(fd, _ETAG_XATTR).decode()
        except OSError:
            cached = ""
        if cached.startswith(stamp):
            return cached[len(stamp):]
        digest = hashlib.md5(usedforsecurity=False)  # S3's ETag of a simple upload, not a security hash
        offset = 0
        while chunk := os.pread(fd, HASH_CHUNK_BYTES, offset):
            digest.update(chunk)
            offset += len(chunk)
        etag = digest.hexdigest()
        # A read-only folder or no extended attributes: hash again next time. (Does not touch the mtime.)
        with contextlib.suppress(OSError):
            os.setxattr(fd, _ETAG_XATTR, (stamp + etag).encode())
        return etag

    def _open(self, key: str, *, etag: str | None = None, version_id: str | None = None) -> BinaryIO:
        """The open file of `key`, checked against the pinned version."""
        path = self._path(key)
        try:
            file = _open_file(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeKey(f"{key!r} is a symbolic link") from None
            if isinstance(exc, PermissionError):
                message = f"{self.url(key)}: access refused: {exc.strerror or exc}"
                raise AccessRefused(message, _code(exc)) from exc
            if not isinstance(exc, FileNotFoundError | NotADirectoryError | IsADirectoryError):
                raise LandingError(f"{self.url(key)}: {exc.strerror or exc}", _code(exc)) from exc
            since = " (deleted since discovery)" if etag or version_id else ""
            raise ObjectGone(f"{self.url(key)} no longer exists{since}", "404") from None
        stat = os.fstat(file.fileno())
        if not S_ISREG(stat.st_mode):
            file.close()
            raise ObjectGone(f"{self.url(key)} is not a file", "404")
        changed = version_id is not None or (etag and self._etag(file.fileno(), stat) != etag)
        if changed:
            file.close()
            raise ObjectChanged(f"{self.url(key)} changed since it was discovered (ETag differs)", "412")
        return file

    # --- the protocol -----------------------------------------------------------------------------------

    def list(self, prefix: str) -> Iterator[ListedObject]:
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        top = self._path(folder + "/") if folder else self._root
        found: list[Path] = []
        for directory, _, names in os.walk(top):  # does not follow symbolic links
            found.extend(Path(directory, n) for n in names if _TEMP_MARK not in n)
        for path in sorted(found, key=self._key):  # S3 lists in key order
            key = self._key(path)
            if not key.startswith(prefix):
                continue
            try:
                if not S_ISREG(os.lstat(path).st_mode):
                    continue  # links, pipes, sockets: not objects
                with _open_file(path) as file:
                    stat = os.fstat(file.fileno())
                    etag = self._etag(file.fileno(), stat)
            except OSError:
                continue  # deleted (or replaced by a link) while listing
            yield ListedObject(key, etag, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))

    def head(self, key: str) -> ObjectHead:
        with self._open(key) as file:
            fd = file.fileno()
            stat = os.fstat(fd)
            attributes = _xattrs(fd)
            etag = self._etag(fd, stat)
        content_type = attributes.get(_TYPE_XATTR)
        return ObjectHead(
            key=key,
            etag=etag,
            size=stat.st_size,
            version_id=None,
            content_type=content_type.decode() if content_type else mimetypes.guess_type(key)[0],
            metadata={
                n[len(_META_XATTR):]: v.decode() for n, v in attributes.items() if n.startswith(_META_XATTR)
            },
            last_modified=datetime.fromtimestamp(stat.st_mtime, UTC),
        )

    def read_range(
        self,
        key: str,
        start: int = 0,
        length: int | None = None,
        *,
        etag: str | None = None,
        version_id: str | None = None,
    ) -> BinaryIO:
        file = self._open(key, etag=etag, version_id=version_id)
        file.seek(start)
        if length is None:
            return file
        return io.BufferedReader(_Window(file, length))  # type: ignore[return-value]

    def copy(
        self, source_key: str, target_key: str, *, etag: str, version_id: str | None = None, size: int = 0
    ) -> None:
        target = self._path(target_key)
        with self._open(source_key, etag=etag, version_id=version_id) as source:
            attributes = _xattrs(source.fileno())
            attributes.pop(_ETAG_XATTR, None)
            self._write(target, lambda out: _copy_stream(source, out), attributes, etag)

    def put(
        self,
        key: str,
        body: bytes,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        path = self._path(key)
        if key.endswith("/"):
            if body:
                raise LandingError(f"{self.url(key)}: a folder key cannot have content")
            path.mkdir(parents=True, exist_ok=True)
            return
        attributes = {_META_XATTR + k.lower(): str(v).encode() for k, v in (metadata or {}).items()}
        if content_type:
            attributes[_TYPE_XATTR] = content_type.encode()
        self._write(path, lambda out: out.write(body), attributes, None)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            if not S_ISREG(os.lstat(path).st_mode):
                raise UnsafeKey(f"{key!r} is not a file")  # never unlink a link or a pipe by its key
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise LandingError(f"{self.url(key)}: {exc.strerror or exc}", _code(exc)) from exc

    def _write(
        self,
        path: Path,
        fill: Callable[[BinaryIO], object],
        attributes: Mapping[str, bytes],
        etag: str | None,
    ) -> None:
        """Write a temporary file beside `path` (fill(out)), set its attributes, rename it into place."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name[:64]}{_TEMP_MARK}", dir=path.parent)
            try:
                with os.fdopen(descriptor, "wb") as out:
                    fill(out)
                    out.flush()
                    for name, value in attributes.items():
                        os.setxattr(out.fileno(), name, value)
                    if etag is not None:
                        stamp = _stamp(os.fstat(out.fileno())) + etag
                        os.setxattr(out.fileno(), _ETAG_XATTR, stamp.encode())
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise LandingError(f"{self.url(self._key(path))}: {exc.strerror or exc}", _code(exc)) from exc


def _copy_stream(source: BinaryIO, out: BinaryIO) -> None:
    while chunk := source.read(HASH_CHUNK_BYTES):
        out.write(chunk)
