"""Alembic environment for the results schema. Run it through `aps_results.migrate` (or `aps-db upgrade`).

Migrations run in one transaction under a PostgreSQL advisory lock, so two DAG runs or containers starting
at once apply them one after the other instead of racing; the second finds the schema already at head.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from aps_results.migrate import include_name
from aps_results.models import SCHEMA, Base

MIGRATION_LOCK = "aps_results.migrate"


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table_schema=SCHEMA,
        include_schemas=True,
        include_name=include_name,
        compare_server_default=True,
    )
    with context.begin_transaction():
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": MIGRATION_LOCK})
        connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        context.run_migrations()


connection = context.config.attributes.get("connection")
if context.is_offline_mode() or connection is None:
    raise RuntimeError("run the results migrations with aps_results.migrate.upgrade(url) or `aps-db upgrade`")
run_migrations(connection)
