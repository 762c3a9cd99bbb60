"""A throwaway Redis server (the Celery broker of the local stack) from Debian's `redis-server` binary.

Bound to 127.0.0.1 on a free port, with its working directory under the stack's directory and no
persistence: a broker that loses its queue on restart is fine for a stack that starts from scratch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import redis

from aps_devstack.debian import ensure_debian_package
from aps_devstack.process import ManagedProcess, free_port


@dataclass
class LocalRedis:
    """One `redis-server` in its own process group; `stop()` ends it."""

    data_dir: Path
    port: int
    process: ManagedProcess

    @classmethod
    def start(cls, base_dir: Path, port: int | None = None, timeout: float = 30) -> LocalRedis:
        binary = ensure_debian_package("redis-server", binary="redis-server")
        data_dir = Path(base_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        argv = [
            binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir),
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
        ]
        server = cls(data_dir, port, ManagedProcess("redis", argv, data_dir / "redis.log"))
        try:
            server.wait_ready(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def url(self, database: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{database}"

    def wait_ready(self, timeout: float) -> None:
        """Wait until the server answers PING (or fail with its log when it exits first)."""
        deadline = time.monotonic() + timeout
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)
        try:
            while time.monotonic() < deadline:
                if not self.process.alive():
                    raise RuntimeError(f"redis-server exited with {self.process.returncode()}:\n"
                                       f"{self.process.log_tail()}")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    time.sleep(0.1)
        finally:
            client.close()
        raise TimeoutError(f"redis-server on port {self.port} did not answer within {timeout:.0f}s")

    def stop(self) -> None:
        self.process.stop()
