"""Opt-in token cache shared between processes through files (`APSConfig.token_cache_dir`).

Airflow runs every task instance in its own process, so the in-process cache (auth.py) alone makes each
task fetch its own token. With a cache directory, a process whose in-process cache misses takes an
exclusive `flock` on a per-key lock file, reads the token file, and only fetches (then writes the file)
when it holds no usable token. Two processes starting at once therefore fetch one token between them.

Safety rules:
- File names are sha256(base_url, client_id, sha256(secret), sorted scopes): no credential in clear.
- A token file holds only {access_token, token_type, expires_at, scopes}; mode 0600 in a 0700 directory
  owned by this user; written to a temp file and `os.replace`d, so readers never see half a file.
- The cache is an optimisation: any failure (permissions, corrupt JSON, read-only file system, lock wait
  timeout) logs a warning, never the token, and the caller simply fetches a token as without the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from aps_client.config import APSConfig
from aps_client.models import Token

log = logging.getLogger("aps_client")

# How long to wait for another process's "check file -> fetch -> write". A token fetch takes well under a
# second; after this we stop waiting and fetch on our own rather than stall the task.
LOCK_TIMEOUT = 30.0
LOCK_POLL = 0.05


def file_key(config: APSConfig, scopes: tuple[str, ...]) -> str:
    secret_hash = hashlib.sha256(config.client_secret.get_secret_value().encode()).hexdigest()
    material = json.dumps([config.base_url, config.client_id, secret_hash, sorted(set(scopes))])
    return hashlib.sha256(material.encode()).hexdigest()


class TokenFileCache:
    """Token files in one directory. Every method swallows OS/format errors (with a warning)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def token_path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def lock_path(self, key: str) -> Path:
        return self.directory / f"{key}.lock"

    # -- the lock ------------------------------------------------------------------------------------

    def open_lock(self, key: str) -> int | None:
        """An open lock file descriptor, or None (warned) when the directory is unusable."""
        try:
            self._ensure_directory()
            return os.open(self.lock_path(key), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            self._warn("cannot open the lock file", exc)
            return None

    @staticmethod
    def try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    @staticmethod
    def release(fd: int) -> None:
        # Closing the descriptor drops the flock as well.
        with contextlib.suppress(OSError):
            os.close(fd)

    @contextlib.contextmanager
    def locked(self, key: str) -> Iterator[bool]:
        """Hold the key's exclusive lock. Yields whether the cache directory is usable at all; after a lock
        wait timeout it is, just unlocked (reads and writes stay safe thanks to the atomic replace)."""
        fd = self.open_lock(key)
        usable = fd is not None
        deadline = time.monotonic() + LOCK_TIMEOUT
        while fd is not None and not self.try_lock(fd):
            if time.monotonic() >= deadline:
                self._warn_timeout()
                self.release(fd)
                fd = None
                break
            time.sleep(LOCK_POLL)
        try:
            yield usable
        finally:
            if fd is not None:
                self.release(fd)

    @contextlib.asynccontextmanager
    async def alocked(self, key: str) -> AsyncIterator[bool]:
        """`locked()` for the event loop: file calls run in a thread, waiting is an asyncio.sleep."""
        fd = await asyncio.to_thread(self.open_lock, key)
        usable = fd is not None
        deadline = time.monotonic() + LOCK_TIMEOUT
        try:
            # A non-blocking flock is one quick syscall; polling it keeps a cancelled task from leaving a
            # thread behind that later takes the lock with nobody to release it.
            while fd is not None and not self.try_lock(fd):
                if time.monotonic() >= deadline:
                    self._warn_timeout()
                    self.release(fd)
                    fd = None
                    break
                await asyncio.sleep(LOCK_POLL)
            yield usable
        finally:
            if fd is not None:
                self.release(fd)

    # -- the token file ------------------------------------------------------------------------------

    def read(self, key: str, margin: float) -> Token | None:
        """The stored token if it is still good for `margin` seconds, else None."""
        path = self.token_path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._warn("cannot read the token file", exc)
            return None
        try:
            with os.fdopen(fd, "rb") as file:
                body = json.loads(file.read())
            expires_at = float(body["expires_at"])
            token = Token(
                access_token=str(body["access_token"]),
                token_type=str(body.get("token_type") or "Bearer"),
                expires_in=max(0, int(expires_at - time.time())),
                expires_at=expires_at,
                scopes=tuple(str(scope) for scope in body.get("scopes") or ()),
            )
        except OSError as exc:
            self._warn("cannot read the token file", exc)
            return None
        except (ValueError, KeyError, TypeError) as exc:
            # Only the error type: a parse error's text may quote the file, i.e. the token.
            self._warn("ignoring a corrupt token file", type(exc).__name__)
            return None
        return None if token.expires_within(margin) else token

    def write(self, key: str, token: Token) -> None:
        body = {
            "access_token": token.access_token,
            "token_type": token.token_type,
            "expires_at": token.expires_at,
            "scopes": list(token.scopes),
        }
        temp_name: str | None = None
        try:
            self._ensure_directory()
            # mkstemp creates the file 0600 with O_EXCL, so nobody can plant it or read it meanwhile.
            fd, temp_name = tempfile.mkstemp(dir=self.directory, prefix=".token-", suffix=".tmp")
            with os.fdopen(fd, "w") as file:
                json.dump(body, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp_name, self.token_path(key))
            temp_name = None
        except OSError as exc:
            self._warn("cannot write the token file", exc)
        finally:
            if temp_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temp_name)

    def discard(self, key: str, token: Token) -> None:
        """Delete the token file if it still holds `token` (APS refused it); a newer token is kept."""
        stored = self.read(key, margin=float("-inf"))
        if stored is None or stored.access_token != token.access_token:
            return
        try:
            os.unlink(self.token_path(key))
        except FileNotFoundError:
            pass
        except OSError as exc:
            self._warn("cannot delete the token file", exc)

    # -- helpers -------------------------------------------------------------------------------------

    def _ensure_directory(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = self.directory.stat()
        # Refuse a directory someone else controls: they could read or swap our tokens.
        if info.st_uid != os.getuid() or info.st_mode & 0o022:
            raise PermissionError(f"{self.directory} must be owned by this user and not writable by others")

    def _warn(self, what: str, detail: object) -> None:
        log.warning("APS token file cache in %s: %s (%s); fetching a token instead", self.directory, what,
                    detail)

    def _warn_timeout(self) -> None:
        log.warning("APS token file cache in %s: lock busy for %.0fs; fetching a token without it",
                    self.directory, LOCK_TIMEOUT)


def file_cache(config: APSConfig) -> TokenFileCache | None:
    return TokenFileCache(config.token_cache_dir) if config.token_cache_dir is not None else None
