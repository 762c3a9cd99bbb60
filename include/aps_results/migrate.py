"""Apply and check the results schema's Alembic migrations, without an alembic.ini.

    upgrade(url)                 bring the schema to head (safe to call concurrently; no-op when current)
    current_revision(url)        the database's revision, None for an empty database
    head_revision()              the revision this code expects
    assert_schema_current(url)   raise SchemaNotCurrent unless the database is at head (the DAG's first check)
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from aps_results.db import as_engine
from aps_results.models import SCHEMA

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Alembic keeps its running migration context in a module-level proxy, so two threads of one process must
# not run migrations at once. Across processes, env.py serialises runs with a PostgreSQL advisory lock.
_IN_PROCESS = threading.Lock()


class SchemaNotCurrent(RuntimeError):
    """The results database is not at the revision this code was written for."""


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic's filter: compare only our schema."""
    if type_ == "schema":
        return name == SCHEMA
    return True


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def upgrade(url: str | URL | Engine, revision: str = "head") -> str | None:
    """Apply migrations up to `revision` in one transaction; returns the database's revision afterwards."""
    engine, owned = as_engine(url)
    try:
        config = alembic_config()
        with _IN_PROCESS, engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
        return current_revision(engine)
    finally:
        if owned:
            engine.dispose()


def downgrade(url: str | URL | Engine, revision: str) -> None:
    engine, owned = as_engine(url)
    try:
        config = alembic_config()
        with _IN_PROCESS, engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, revision)
    finally:
        if owned:
            engine.dispose()


def current_revision(url: str | URL | Engine) -> str | None:
    engine, owned = as_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table_schema": SCHEMA})
            return context.get_current_revision()
    finally:
        if owned:
            engine.dispose()


def assert_schema_current(url: str | URL | Engine) -> str:
    """Return the head revision, or raise SchemaNotCurrent with what to do about it."""
    current, head = current_revision(url), head_revision()
    if current != head:
        found = "no results schema" if current is None else f"results schema at revision {current}"
        raise SchemaNotCurrent(
            f"{found}, but this code expects revision {head}: run `aps-db upgrade` (or "
            "aps_results.migrate.upgrade(url)) against the results database first"
        )
    return head
