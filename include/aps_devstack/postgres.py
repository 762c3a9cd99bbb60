"""A throwaway PostgreSQL cluster built from the machine's server binaries (initdb, pg_ctl)."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from aps_devstack.process import free_port

INSTALL_HINT = (
    "PostgreSQL 15+ server binaries (initdb, pg_ctl, postgres) are required. Install them with "
    "`apt-get install postgresql` (Debian/Ubuntu) or `brew install postgresql@15` (macOS), and make sure "
    "initdb and pg_ctl are on PATH (for Debian: /usr/lib/postgresql/15/bin)."
)


class MissingPrerequisite(RuntimeError):
    """A program the local stack needs is not installed; the message says how to install it."""


def _find_binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise MissingPrerequisite(f"`{name}` not found. {INSTALL_HINT}")


def _drop_root() -> tuple[Callable[[], None] | None, int | None, int | None]:
    """PostgreSQL refuses to run as root: when we are root, run it as the `postgres` (or `nobody`) user."""
    if os.geteuid() != 0:
        return None, None, None
    for user in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            continue
        uid, gid = entry.pw_uid, entry.pw_gid

        def demote(uid: int = uid, gid: int = gid) -> None:
            os.setgid(gid)
            os.setuid(uid)

        return demote, uid, gid
    raise MissingPrerequisite(
        "running as root and no unprivileged user (postgres or nobody) to run PostgreSQL"
    )


def _traversable_by_others(path: Path) -> bool:
    """True when every existing ancestor of `path` lets other users through (o+x)."""
    for parent in path.resolve().parents:
        if parent.exists() and not parent.stat().st_mode & stat.S_IXOTH:
            return False
    return True


@dataclass
class LocalPostgres:
    """One PostgreSQL cluster on 127.0.0.1 with trust authentication for the superuser `postgres`.

    The cluster lives in `data_dir`; `stop()` shuts it down and `destroy()` also deletes the files.
    """

    data_dir: Path
    port: int
    superuser: str = "postgres"

    @classmethod
    def start(cls, base_dir: Path | None = None, port: int | None = None) -> LocalPostgres:
        initdb, pg_ctl = _find_binary("initdb"), _find_binary("pg_ctl")
        demote, uid, gid = _drop_root()
        # A short path keeps the Unix socket name under its length limit.
        if base_dir is None or (uid is not None and not _traversable_by_others(Path(base_dir))):
            # As root the cluster runs as another user, who must be able to reach its directory.
            base = Path(tempfile.mkdtemp(prefix="apspg-"))
        else:
            base = Path(base_dir)
        base.mkdir(parents=True, exist_ok=True)
        data_dir, socket_dir = base / "data", base / "sock"
        socket_dir.mkdir(exist_ok=True)
        if uid is not None:
            for path in (base, socket_dir):
                os.chown(path, uid, gid)  # type: ignore[arg-type]
        port = port or free_port()
        if not (data_dir / "PG_VERSION").exists():
            subprocess.run(
                [
                    initdb,
                    "-D",
                    str(data_dir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "--locale=C",
                ],
                check=True,
                capture_output=True,
                preexec_fn=demote,
            )
        options = (
            f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        result = subprocess.run(
            [
                pg_ctl,
                "-D",
                str(data_dir),
                "-o",
                options,
                "-l",
                str(base / "postgres.log"),
                "-w",
                "-t",
                "60",
                "start",
            ],
            capture_output=True,
            text=True,
            preexec_fn=demote,
        )
        if result.returncode != 0:
            log = (
                (base / "postgres.log").read_text(errors="replace")
                if (base / "postgres.log").exists()
                else ""
            )
            raise RuntimeError(f"pg_ctl start failed: {result.stderr.strip()}\n{log[-2000:]}")
        return cls(data_dir=data_dir, port=port)

    def url(
        self, database: str = "postgres", user: str | None = None, driver: str = "postgresql+psycopg"
    ) -> str:
        return f"{driver}://{user or self.superuser}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={self.superuser} dbname={database}"

    def create_database(self, name: str) -> str:
        """Create (or recreate) database `name`; returns its SQLAlchemy URL."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        pg_ctl = _find_binary("pg_ctl")
        demote, _, _ = _drop_root()
        subprocess.run(
            [pg_ctl, "-D", str(self.data_dir), "-m", "fast", "-w", "stop"],
            capture_output=True,
            preexec_fn=demote,
        )

    def restart(self) -> None:
        """Stop (fast: open sessions are cut) and start again on the same port, as a failover would."""
        pg_ctl = _find_binary("pg_ctl")
        demote, _, _ = _drop_root()
        log = self.data_dir.parent / "postgres.log"
        # Without -o, pg_ctl restart reuses the options of the last start (postmaster.opts).
        subprocess.run(
            [pg_ctl, "-D", str(self.data_dir), "-m", "fast", "-l", str(log), "-w", "-t", "60", "restart"],
            check=True, capture_output=True, preexec_fn=demote,
        )

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)
