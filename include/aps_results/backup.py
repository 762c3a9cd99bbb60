"""Backups of the results database: `pg_dump` custom format plus a manifest that proves a restore is whole.

    backup(url, folder)            -> BackupManifest   dump schema `aps` into folder/<UTC stamp>/
    restore(source, url)           -> BackupManifest   restore a backup into an empty database, verified
    table_fingerprints(connection) -> {table: Fingerprint}
    prune(folder, keep)            -> removed folders  keep the newest `keep` backups under folder

The manifest's row counts and checksums are read in the same snapshot `pg_dump` dumps (an exported snapshot of
a REPEATABLE READ transaction), so a backup taken while the pipeline loads is consistent with its manifest. A
table's checksum is the XOR of its rows' md5 (as text): one pass, independent of row order, so the restored
copy reads the same without sorting millions of property rows. A restore is refused on a database that already
holds the schema, unless `replace=True` (then pg_restore drops the dumped objects first, in one transaction:
a failed restore leaves the target as it was).

Credentials: the URL's password reaches pg_dump/pg_restore through PGPASSWORD in their environment, never on
their command line (visible in `ps`) nor in any message.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL

from aps_results import roles
from aps_results.db import as_engine, normalize_url
from aps_results.models import EXTENSIONS, SCHEMA

DUMP_NAME = "results.dump"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
PG_TOOL_TIMEOUT_SECONDS = 6 * 3600  # a dump of a very large portfolio; a hung tool still ends


class BackupError(RuntimeError):
    """A backup or restore could not be made or does not match its manifest (the message says why)."""


@dataclass(frozen=True)
class Fingerprint:
    rows: int
    checksum: str  # 16 hex digits: XOR of the rows' md5 prefixes


@dataclass(frozen=True)
class BackupManifest:
    format: int
    created_at: str
    revision: str | None
    dump_bytes: int
    dump_sha256: str
    tables: dict[str, Fingerprint]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def read(cls, folder: Path) -> BackupManifest:
        path = folder / MANIFEST_NAME
        try:
            raw = json.loads(path.read_text())
            tables = {name: Fingerprint(**value) for name, value in raw.pop("tables").items()}
            manifest = cls(tables=tables, **raw)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise BackupError(f"{path} is not a backup manifest: {exc}") from exc
        if manifest.format != MANIFEST_FORMAT:
            raise BackupError(f"{path}: manifest format {manifest.format}, this code reads {MANIFEST_FORMAT}")
        return manifest


def _tables(connection: Connection) -> list[str]:
    """The schema's tables to fingerprint."""
    names = connection.execute(text(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = :schema AND c.relkind IN ('r', 'p') ORDER BY c.relname"), {"schema": SCHEMA})
    return [name for (name,) in names]


def table_fingerprints(connection: Connection) -> dict[str, Fingerprint]:
    """Rows and an order-independent checksum of every table of the schema, in the connection's snapshot."""
    prints: dict[str, Fingerprint] = {}
    for table in _tables(connection):
        rows, checksum = connection.execute(text(
            f'SELECT count(*), coalesce(bit_xor((\'x\' || left(md5(t::text), 16))::bit(64)::bigint), 0) '
            f'FROM {SCHEMA}."{table}" AS t')).one()
        prints[table] = Fingerprint(rows=rows, checksum=f"{checksum & (2**64 - 1):016x}")
    return prints


def _pg_environment(url: URL) -> dict[str, str]:
    env = {**os.environ, "PGHOST": url.host or "localhost", "PGPORT": str(url.port or 5432),
           "PGDATABASE": url.database or "", "PGUSER": url.username or ""}
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return env


def _run_pg_tool(arguments: list[str], url: URL) -> None:
    tool = shutil.which(arguments[0])
    if tool is None:
        raise BackupError(f"{arguments[0]} not found: install the PostgreSQL client tools")
    try:
        done = subprocess.run([tool, *arguments[1:]], env=_pg_environment(url), capture_output=True,
                              text=True, timeout=PG_TOOL_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BackupError(f"{arguments[0]} did not finish within {PG_TOOL_TIMEOUT_SECONDS} s") from exc
    if done.returncode != 0:
        # The tools' stderr names objects and the server's errors, never the password (it is not an argument).
        raise BackupError(f"{arguments[0]} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def _exported_snapshot(engine: Engine) -> Iterator[tuple[str, Connection]]:
    """A REPEATABLE READ transaction held open while pg_dump reads the same snapshot."""
    with engine.connect() as connection:
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            snapshot = connection.execute(text("SELECT pg_export_snapshot()")).scalar_one()
            yield snapshot, connection


def backup(
    url: str | URL | Engine, folder: str | Path, *, now: datetime | None = None,
) -> tuple[Path, BackupManifest]:
    """Dump the results schema into a new folder under `folder`; returns that folder and its manifest."""
    engine, owned = as_engine(url)
    target = Path(folder) / (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    target.mkdir(parents=True, exist_ok=False)
    try:
        with _exported_snapshot(engine) as (snapshot, connection):
            tables = table_fingerprints(connection)
            revision = connection.execute(text(f"SELECT version_num FROM {SCHEMA}.alembic_version")).scalar()
            dump = target / DUMP_NAME
            _run_pg_tool(["pg_dump", "--format=custom", f"--schema={SCHEMA}", f"--snapshot={snapshot}",
                          f"--file={dump}"], normalize_url(engine.url))
        manifest = BackupManifest(format=MANIFEST_FORMAT, created_at=datetime.now(UTC).isoformat(),
                                  revision=revision, dump_bytes=dump.stat().st_size,
                                  dump_sha256=_sha256(dump), tables=tables)
        (target / MANIFEST_NAME).write_text(manifest.to_json())
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # never leave a dump without its manifest
        raise
    finally:
        if owned:
            engine.dispose()
    return target, manifest


def _schema_exists(engine: Engine) -> bool:
    with engine.connect() as connection:
        found = connection.execute(text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": SCHEMA})
        return found.first() is not None


def _differences(expected: dict[str, Fingerprint], found: dict[str, Fingerprint]) -> list[str]:
    names = sorted(set(expected) | set(found))
    return [f"{name}: backup {expected.get(name)}, restored {found.get(name)}"
            for name in names if expected.get(name) != found.get(name)]


def restore(source: str | Path, url: str | URL | Engine, *, replace: bool = False) -> BackupManifest:
    """Restore the backup in folder `source` into the database at `url`, then verify it by its manifest."""
    folder = Path(source)
    manifest = BackupManifest.read(folder)
    dump = folder / DUMP_NAME
    if not dump.is_file() or _sha256(dump) != manifest.dump_sha256:
        raise BackupError(f"{dump} is missing or does not match its manifest's sha256")
    engine, owned = as_engine(url)
    try:
        if _schema_exists(engine) and not replace:
            raise BackupError(f"the target database already has schema {SCHEMA!r}: restore into an empty "
                              "database, or pass --replace to drop it first")
        with engine.begin() as connection:  # a schema-only dump leaves out the extensions its indexes use
            for extension in EXTENSIONS:
                connection.execute(text(f'CREATE EXTENSION IF NOT EXISTS "{extension}"'))
        arguments = ["pg_restore", "--no-owner", "--no-acl", "--exit-on-error", "--single-transaction",
                     f"--dbname={normalize_url(engine.url).database}"]
        if replace:
            arguments += ["--clean", "--if-exists"]
        _run_pg_tool([*arguments, str(dump)], normalize_url(engine.url))
        roles.grant_reader(engine)
        with engine.connect() as connection:
            problems = _differences(manifest.tables, table_fingerprints(connection))
        if problems:
            raise BackupError("the restored database differs from the backup: " + "; ".join(problems))
    finally:
        if owned:
            engine.dispose()
    return manifest


def prune(folder: str | Path, keep: int) -> list[Path]:
    """Remove all but the newest `keep` backups (folders holding a manifest) under `folder`."""
    if keep < 1:
        raise ValueError("keep at least one backup")
    backups = sorted(path.parent for path in Path(folder).glob(f"*/{MANIFEST_NAME}"))
    removed = backups[:-keep]
    for path in removed:
        shutil.rmtree(path)
    return removed
