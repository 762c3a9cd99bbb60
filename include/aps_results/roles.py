"""Login roles for consumers of the results database (the API, analysts): members of `aps_reader`.

The password travels to PostgreSQL only as a SCRAM-SHA-256 verifier computed here by libpq, so it never
appears in a statement (server logs print failing statements) nor in our logs or exceptions.
"""

from __future__ import annotations

import re

from psycopg import sql
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from aps_results.db import as_engine
from aps_results.models import READER_ROLE, SCHEMA

_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def create_reader_login(url: str | URL | Engine, name: str, password: SecretStr | str) -> None:
    """Create login role `name` in `aps_reader`, or reset its password if it exists. Idempotent.

    `url` must connect as a role allowed to create roles (superuser or CREATEROLE). Run the migrations
    first: they create `aps_reader`.
    """
    if not _ROLE_NAME.fullmatch(name):
        raise ValueError(f"invalid role name {name!r}: use lowercase letters, digits and _ (max 63)")
    secret = password.get_secret_value() if isinstance(password, SecretStr) else password
    if not secret:
        raise ValueError("the password must not be empty")
    engine, owned = as_engine(url)
    try:
        with engine.begin() as connection:
            pg = connection.connection.driver_connection  # the psycopg 3 connection
            verifier = pg.pgconn.encrypt_password(secret.encode(), name.encode(), b"scram-sha-256").decode()
            role_exists = "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s"
            exists = pg.execute(role_exists, [name]).fetchone()
            if not pg.execute(role_exists, [READER_ROLE]).fetchone():
                raise RuntimeError(f"role {READER_ROLE} is missing: run `aps-db upgrade` first")
            statement = "ALTER ROLE {} LOGIN PASSWORD {}" if exists else "CREATE ROLE {} LOGIN PASSWORD {}"
            pg.execute(sql.SQL(statement).format(sql.Identifier(name), sql.Literal(verifier)))
            pg.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(READER_ROLE), sql.Identifier(name)))
    finally:
        if owned:
            engine.dispose()


def grant_reader(url: str | URL | Engine) -> None:
    """Make `aps_reader` exist and read the schema: what a restore without the source's ACLs has to redo.

    Same statements as the first migration (roles are cluster-wide, so a restore into another cluster finds
    none); idempotent.
    """
    engine, owned = as_engine(url)
    try:
        with engine.begin() as connection:
            pg = connection.connection.driver_connection
            exists = pg.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", [READER_ROLE])
            if not exists.fetchone():
                pg.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(READER_ROLE)))
            reader, schema = sql.Identifier(READER_ROLE), sql.Identifier(SCHEMA)
            pg.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, reader))
            pg.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(schema, reader))
            pg.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}")
                       .format(schema, reader))
    finally:
        if owned:
            engine.dispose()
