"""Analytics export: each loaded document version's objects and properties as Parquet, in a folder or on S3.

    sink = open_sink("s3://bucket/analytics")          # or a folder: open_sink("/data/analytics")
    export_version(engine, version_id, sink)            # one document version -> two Parquet files
    export_all(engine, sink)                            # every loaded version (aps-db export DEST)

Layout (Hive-style, so DuckDB, Spark or Athena read the path's fields as columns):

    DEST/project=<project>/document=<document id>/version=<n>/objects.parquet
                                                              /properties.parquet

`<n>` is the version's number in its document's landing order; `<project>` the document's project
(URL-quoted, which DuckDB decodes; `none` when it has none). DuckDB reads a whole export with
`read_parquet('DEST/*/*/*/properties.parquet', hive_partitioning = true)`. The columns are the results tables'
own (`aps_results.models`: ModelObject, Property), so a new results column is exported without a change
here. Rows are read from PostgreSQL in batches in one snapshot and written a row group at a time, so a model
of millions of properties never sits in memory whole; each file is written to a temporary file first and
then moved or uploaded, so a reader never sees half a file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Column, Connection, Engine, Table, select, text

from aps_results.models import SCHEMA, Document, DocumentVersion, File, ModelObject, Property, pg_type
from aps_versions.documents import numbered_versions

BATCH_ROWS = 50_000
# By PostgreSQL type (models.pg_type), as the loader's COPY names them.
_ARROW_TYPES = {"bigint": pa.int64(), "integer": pa.int32(), "text": pa.string(),
                "double precision": pa.float64(), "boolean": pa.bool_()}
# What each export file holds, and its sort order (stable files: the same load exports the same bytes).
_TABLES: dict[str, tuple[Table, tuple[str, ...]]] = {
    "objects": (ModelObject.__table__, ("view_guid", "object_id")),
    "properties": (Property.__table__, ("view_guid", "object_id", "category", "name")),
}


class Sink(Protocol):
    """Where export files go: `put` moves a finished local file to `key` (a relative path)."""

    def put(self, local: Path, key: str) -> str: ...


@dataclass(frozen=True)
class FolderSink:
    root: Path

    def put(self, local: Path, key: str) -> str:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(local, target)  # atomic within one file system; the temporary file is beside it
        return str(target)

    def scratch(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root


@dataclass(frozen=True)
class S3Sink:
    client: Any  # a boto3 S3 client (the caller's credentials and endpoint)
    bucket: str
    prefix: str

    def put(self, local: Path, key: str) -> str:
        full = f"{self.prefix.strip('/')}/{key}" if self.prefix.strip("/") else key
        self.client.upload_file(str(local), self.bucket, full)  # multipart for big files
        local.unlink()
        return f"s3://{self.bucket}/{full}"

    def scratch(self) -> Path:
        return Path(tempfile.gettempdir())


def open_sink(dest: str, s3_client: Any = None) -> FolderSink | S3Sink:
    """A sink for `dest`: `s3://bucket/prefix` (with `s3_client`, else one from the environment's AWS
    settings) or a folder."""
    if dest.startswith("s3://"):
        bucket, _, prefix = dest[len("s3://"):].partition("/")
        if not bucket:
            raise ValueError(f"no bucket in {dest!r}: use s3://bucket/prefix")
        if s3_client is None:  # credentials, region and endpoint (AWS_ENDPOINT_URL) from the environment
            from aps_landing.s3 import make_s3_client

            s3_client = make_s3_client()
        return S3Sink(s3_client, bucket, prefix)
    return FolderSink(Path(dest))


@dataclass(frozen=True)
class ExportedVersion:
    version_id: int
    model_id: int
    files: dict[str, str]  # objects / properties -> where it went
    rows: dict[str, int]


def arrow_schema(table: Table) -> pa.Schema:
    """The table's columns as an Arrow schema (nullability kept)."""
    return pa.schema([pa.field(column.name, _arrow_type(column), nullable=bool(column.nullable))
                      for column in table.columns])


def _arrow_type(column: Column[Any]) -> pa.DataType:
    arrow = _ARROW_TYPES.get(pg_type(column))
    if arrow is not None:
        return arrow
    raise TypeError(f"no Parquet type for {column.table.name}.{column.name} ({column.type})")


def _version(conn: Connection, version_id: int) -> Any:
    """The version's document, project, model and number (numbered as every route numbers them)."""
    document_id = conn.execute(select(DocumentVersion.document_id).where(DocumentVersion.id == version_id)
                               ).scalar()
    if document_id is None:
        return None
    numbered = numbered_versions([document_id])
    return conn.execute(
        select(numbered.c.id, numbered.c.document_id, numbered.c.number, Document.project, File.model_id)
        .join(Document, Document.id == numbered.c.document_id).join(File, File.id == numbered.c.file_id)
        .where(numbered.c.id == version_id)).first()


def version_folder(project: str | None, document_id: int, number: int) -> str:
    return f"project={quote(project, safe='') if project else 'none'}/document={document_id}/version={number}"


def export_version(engine: Engine, version_id: int, sink: FolderSink | S3Sink) -> ExportedVersion:
    """Write one document version's objects and properties; both read in one snapshot."""
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            found = _version(conn, version_id)
            if found is None or found.model_id is None:
                raise LookupError(f"document version {version_id} does not exist or has no model")
            folder = version_folder(found.project, found.document_id, found.number)
            files, rows = {}, {}
            for name, (table, order) in _TABLES.items():
                local, rows[name] = _write_parquet(conn, table, order, found.model_id, sink.scratch())
                files[name] = sink.put(local, f"{folder}/{name}.parquet")
    return ExportedVersion(version_id, found.model_id, files, rows)


def export_all(engine: Engine, sink: FolderSink | S3Sink, document_id: int | None = None
               ) -> Iterator[ExportedVersion]:
    """Export every loaded (not purged) document version, of one document or all."""
    query = (f"SELECT v.id FROM {SCHEMA}.document_versions v JOIN {SCHEMA}.files f ON f.id = v.file_id "
             f"WHERE v.state <> 'purged' AND f.model_id IS NOT NULL"
             + (" AND v.document_id = :document" if document_id is not None else "") + " ORDER BY v.id")
    with engine.connect() as conn:
        ids = list(conn.execute(text(query), {"document": document_id}).scalars())
    for version_id in ids:
        yield export_version(engine, version_id, sink)


def _write_parquet(conn: Connection, table: Table, order: tuple[str, ...], model_id: int,
                   scratch: Path) -> tuple[Path, int]:
    schema = arrow_schema(table)
    query = (select(*table.columns).where(table.c.model_id == model_id)
             .order_by(*(table.c[name] for name in order)))
    handle, name = tempfile.mkstemp(prefix=f".{table.name}-", suffix=".parquet.part", dir=scratch)
    os.close(handle)
    local, count = Path(name), 0
    try:
        with pq.ParquetWriter(local, schema, compression="zstd") as writer:
            result = conn.execution_options(stream_results=True, yield_per=BATCH_ROWS).execute(query)
            for chunk in result.partitions():
                columns = list(zip(*chunk, strict=True)) if chunk else [[] for _ in schema]
                arrays = [pa.array(values, type=field.type)
                          for values, field in zip(columns, schema, strict=True)]
                writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
                count += len(chunk)
    except BaseException:
        local.unlink(missing_ok=True)
        raise
    return local, count
