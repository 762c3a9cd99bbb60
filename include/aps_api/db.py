"""The async database engine the server uses: the read-only role, read-only transactions, short timeouts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

# Belt and braces on top of the read-only role: every transaction is READ ONLY, and no query may run long
# enough to hold a pool connection hostage.
_SESSION_OPTIONS = "-c default_transaction_read_only=on -c statement_timeout=5000"


def async_url(url: str | URL) -> URL:
    """`url` with the psycopg 3 driver, which SQLAlchemy drives asynchronously."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_reader_engine(url: str, pool_size: int) -> AsyncEngine:
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        # No overflow: connections opened and closed per burst cost more than a short wait for a pooled one.
        max_overflow=0,
        pool_timeout=10,
        pool_recycle=1800,
        # Single reads need no transaction: autocommit spares a BEGIN and a ROLLBACK round trip per request.
        # Routes that read several tables take a snapshot with `snapshot()`.
        isolation_level="AUTOCOMMIT",
        connect_args={"options": _SESSION_OPTIONS, "connect_timeout": 5},
    )


@asynccontextmanager
async def snapshot(conn: AsyncConnection) -> AsyncIterator[AsyncConnection]:
    """A REPEATABLE READ transaction on `conn`, so several queries see one consistent state of the results
    (the loader replaces a model's rows in one transaction; this never sees half of a load)."""
    await conn.execution_options(isolation_level="REPEATABLE READ")
    async with conn.begin():
        yield conn
