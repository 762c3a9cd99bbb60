"""`aps-db`: manage the results database.

    aps-db upgrade [--url URL]                 apply migrations up to head
    aps-db current [--url URL]                 print the database's revision and the code's head
    aps-db create-reader NAME [--url URL]      create/refresh a read-only login role (member of aps_reader)
    aps-db backup FOLDER|s3://BUCKET/PREFIX [--keep N] [--url URL]
                                               pg_dump the results schema into FOLDER/<UTC stamp>/ (or under
                                               the S3 prefix) with a manifest (row counts, checksums); keep
                                               the newest N backups
    aps-db restore BACKUP --url URL [--replace]
                                               restore one backup (a folder, or s3://BUCKET/PREFIX/<stamp>)
                                               into an empty database and verify it
    aps-db export DEST [--document ID] [--url URL]
                                               every loaded document version's objects and properties as
                                               Parquet under DEST (a folder or s3://bucket/prefix)

S3 is reached with the AWS environment's credentials (AWS_ENDPOINT_URL_S3 for an S3-compatible server).

The URL comes from --url or APS_RESULTS_DB_URL. The reader's password comes from APS_READER_PASSWORD or,
when that is unset, an interactive prompt; it is never printed.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

from pydantic import SecretStr
from sqlalchemy.exc import SQLAlchemyError

from aps_results import backup, backup_s3, export, migrate, roles
from aps_results.db import URL_ENV, url_from_env

PASSWORD_ENV = "APS_READER_PASSWORD"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aps-db", description="Manage the APS results database.")
    commands = parser.add_subparsers(dest="command", required=True)
    url_help = f"SQLAlchemy/PostgreSQL URL (default: ${URL_ENV})"
    for name, help_text in (("upgrade", "apply migrations up to head"),
                            ("current", "show the current and head revisions")):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--url", help=url_help)
    reader = commands.add_parser("create-reader", help="create a read-only login role (member of aps_reader)")
    reader.add_argument("name", help="login role name")
    reader.add_argument("--url", help=url_help)
    dump = commands.add_parser("backup", help="dump the results schema with a verifying manifest")
    dump.add_argument("folder", help="folder (or s3://bucket/prefix) that receives one sub-folder per backup")
    dump.add_argument("--keep", type=int, help="then remove all but the newest KEEP backups in the folder")
    dump.add_argument("--url", help=url_help)
    load = commands.add_parser("restore", help="restore a backup into an empty database and verify it")
    load.add_argument("source", help="one backup's folder or s3:// prefix (results.dump and manifest.json)")
    load.add_argument("--url", help=url_help)
    load.add_argument("--replace", action="store_true", help="restore over an existing results schema")
    parquet = commands.add_parser("export", help="write loaded document versions as Parquet")
    parquet.add_argument("dest", help="a folder, or s3://bucket/prefix")
    parquet.add_argument("--document", type=int, help="only this document's versions")
    parquet.add_argument("--url", help=url_help)
    return parser


def _export(url: str, dest: str, document: int | None) -> None:
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        versions = rows = 0
        for done in export.export_all(engine, export.open_sink(dest), document):
            versions += 1
            rows += sum(done.rows.values())
            print(f"version {done.version_id} (model {done.model_id}): {done.files['properties']}")
        print(f"exported {versions} document versions, {rows} rows, to {dest}")
    finally:
        engine.dispose()


def _reader_password() -> SecretStr:
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        if not sys.stdin.isatty():
            raise RuntimeError(f"no password: set {PASSWORD_ENV} or run interactively")
        password = getpass.getpass("password for the new reader: ")
    return SecretStr(password)


def _s3_client() -> Any:
    """The project's S3 client (timeouts, bounded retries); credentials and endpoint from the AWS
    environment (AWS_ENDPOINT_URL_S3 for an S3-compatible server)."""
    from aps_landing.s3 import make_s3_client

    return make_s3_client()


def _backup(url: str, destination: str, keep: int | None) -> None:
    """A backup into a folder or an s3:// prefix, and the older ones beyond `keep` removed."""
    if backup_s3.is_s3_uri(destination):
        where, manifest, removed = backup_s3.backup_to_s3(url, destination, _s3_client(), keep=keep)
    else:
        folder, manifest = backup.backup(url, destination)
        where, removed = str(folder), [str(p) for p in (backup.prune(destination, keep) if keep else [])]
    rows = sum(table.rows for table in manifest.tables.values())
    print(f"backup {where}: {len(manifest.tables)} tables, {rows} rows, {manifest.dump_bytes} bytes")
    for old in removed:
        print(f"removed old backup {old}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        url = args.url or url_from_env()
        if args.command == "upgrade":
            print(f"results schema at revision {migrate.upgrade(url)} (head {migrate.head_revision()})")
        elif args.command == "current":
            current, head = migrate.current_revision(url), migrate.head_revision()
            state = "up to date" if current == head else "needs `aps-db upgrade`"
            print(f"current={current or 'none'} head={head} ({state})")
            return 0 if current == head else 1
        elif args.command == "create-reader":
            roles.create_reader_login(url, args.name, _reader_password())
            print(f"reader login {args.name} ready (member of {roles.READER_ROLE})")
        elif args.command == "backup":
            _backup(url, args.folder, args.keep)
        elif args.command == "restore":
            manifest = (backup_s3.restore_from_s3(args.source, url, _s3_client(), replace=args.replace)
                        if backup_s3.is_s3_uri(args.source) else
                        backup.restore(args.source, url, replace=args.replace))
            print(f"restored {args.source} (revision {manifest.revision}): {len(manifest.tables)} tables "
                  "match the manifest")
        elif args.command == "export":
            _export(url, args.dest, args.document)
    except (RuntimeError, ValueError, OSError) as error:
        print(f"aps-db: {error}", file=sys.stderr)
        return 2
    except SQLAlchemyError as error:
        # The driver's own message (e.g. "connection refused"), without SQLAlchemy's statement dump.
        print(f"aps-db: database error: {getattr(error, 'orig', None) or error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
