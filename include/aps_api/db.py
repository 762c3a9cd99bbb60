"""The async database engine the server uses: the read-only role, read-only transactions, short timeouts."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import URL, make_url
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

# Belt and braces on top of the read-only role: every transaction is READ ONLY, and no query may run long
# enough to hold a pool connection hostage.
# plan_cache_mode: psycopg prepares a statement after five executions, and PostgreSQL then settles on a
# generic plan that cannot see the values (which name, how selective a value or a trigram is): at 20M property
# rows the search route's exact lookups took 18.8 ms instead of 7.5 ms. A custom plan costs about a
# millisecond of planning, and routes with many filter shapes need it.
_SESSION_OPTIONS = ("-c default_transaction_read_only=on -c statement_timeout=5000 "
                    "-c plan_cache_mode=force_custom_plan")
# How long a request waits for a free connection before it is answered 503.
POOL_TIMEOUT_SECONDS = 10.0


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
        pool_timeout=POOL_TIMEOUT_SECONDS,
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


class FifoGate:
    """At most `size` holders at a time; the others wait and get in strictly in the order they came.

    The reader engine's pool sits behind one of these, `size` = its pool size, so a request never waits
    inside the pool. The pool's queue (asyncio.Queue underneath) lets a request that arrives just as a
    connection is returned take it ahead of the ones already waiting, which go to the back: under
    saturation most requests were served in milliseconds while some waited seconds. Here a freed place is
    handed to the longest waiter directly. Waiting longer than `timeout` raises the pool's own TimeoutError
    (answered 503 like an exhausted pool)."""

    def __init__(self, size: int, timeout: float) -> None:
        self._free = size
        self._timeout = timeout
        self._waiters: deque[asyncio.Future[None]] = deque()

    @asynccontextmanager
    async def place(self) -> AsyncIterator[None]:
        await self._enter()
        try:
            yield
        finally:
            self._leave()

    async def _enter(self) -> None:
        if self._free and not self._waiters:
            self._free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.shield(turn)
        except BaseException as exc:
            if turn.done():  # handed a place just as it gave up: pass it on
                self._leave()
            else:
                turn.cancel()
                self._waiters.remove(turn)
            if isinstance(exc, TimeoutError):
                raise PoolTimeout(f"no database connection free within {self._timeout:.0f} s") from None
            raise

    def _leave(self) -> None:
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)  # the place goes straight to the longest waiter
                return
        self._free += 1
