"""CallbackListener: hears the URNs of APS's extraction.finished callbacks on the triggerer; one per database
and triggerer process (`CallbackHub`), shared by the waiting triggers (`subscribed`).

The results API's receiver verifies a callback's signature, records its delivery id and NOTIFYs the URN on
`aps_client.webhooks.NOTIFY_CHANNEL` in the results database. The waiting triggers LISTEN there (through
one psycopg async connection per process, autocommit) and, for a URN one waits on, it polls that manifest
at once: the callback only
says "look now"; `manifest_verdict` on the manifest stays the judge, so a forged or wrong callback costs at
most one extra GET. A lost connection is retried with backoff; while it is down the waiter polls at its
plain interval (`WaitPolicy.first_delay(hearing_callbacks=False)`), and once it is back every URN is looked at
once, since callbacks sent meanwhile were not heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from aps_client.webhooks import NOTIFY_CHANNEL

#: Seconds to connect (and to answer the keep-alive query) before the connection counts as lost.
CONNECT_TIMEOUT = 5.0
#: Seconds without a notification after which the connection is checked with a query (a dead TCP
#: connection would otherwise look like a quiet channel for hours).
KEEPALIVE_SECONDS = 30.0
#: Delays between reconnection attempts: doubling from the first to the last.
RECONNECT_DELAYS = (1.0, 30.0)
#: libpq parameters a connection's extra may carry (TLS); anything else in it is not libpq's.
_LIBPQ_EXTRAS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "target_session_attrs")

# A hub outlives the trigger that started it: it logs to the triggerer's log, each trigger to its task's.
log = logging.getLogger(__name__)


def conninfo_of(connection: Any) -> str:
    """A libpq connection string from an Airflow `postgres` connection (it holds the password: never log)."""
    extra = connection.extra_dejson if hasattr(connection, "extra_dejson") else {}
    params: dict[str, Any] = {"host": connection.host, "port": connection.port or 5432,
                              "user": connection.login, "password": connection.password,
                              "dbname": connection.schema, "connect_timeout": int(CONNECT_TIMEOUT),
                              "application_name": "aps-translation-trigger"}
    params.update({key: extra[key] for key in _LIBPQ_EXTRAS if extra.get(key)})
    return make_conninfo(**{key: value for key, value in params.items() if value not in (None, "")})


class CallbackListener:
    """LISTEN on the callbacks' channel until cancelled; call `on_urn` per notification.

    :param conninfo: Reads the connection string (called at each (re)connection, on the event loop).
    :param on_urn: Called with each notification's payload (a URN) while connected.
    :param on_health: Called with True once listening, and with False when a connection fails or is lost.
    """

    def __init__(self, conninfo: Callable[[], Any], on_urn: Callable[[str], None],
                 on_health: Callable[[bool], None]) -> None:
        self._conninfo = conninfo
        self._on_urn = on_urn
        self._on_health = on_health
        self.healthy: bool | None = None  # None: not tried yet

    async def run(self) -> None:
        delay = RECONNECT_DELAYS[0]
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # whatever broke, polling carries on (the message may name a host)
                log.warning("Not hearing APS callbacks (%s); reconnecting in %.0fs", type(exc).__name__,
                            delay)
            self._set_health(False)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_DELAYS[1])

    async def _listen(self) -> None:
        conninfo = await self._conninfo()
        async with asyncio.timeout(CONNECT_TIMEOUT):
            connection = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        async with connection:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))
            self._set_health(True)
            while True:
                async for notify in connection.notifies(timeout=KEEPALIVE_SECONDS):
                    if notify.channel == NOTIFY_CHANNEL and notify.payload:
                        self._on_urn(notify.payload.strip())
                async with asyncio.timeout(CONNECT_TIMEOUT):  # quiet for a while: is the connection alive?
                    await connection.execute("SELECT 1")

    def _set_health(self, healthy: bool) -> None:
        if healthy != self.healthy:
            self.healthy = healthy
            self._on_health(healthy)


class Subscriber(Protocol):
    """What a hub tells a waiting trigger: a URN APS named, and whether callbacks are heard at all."""

    def hear(self, urn: str) -> None: ...

    def set_hearing(self, hearing: bool) -> None: ...


class CallbackHub:
    """One LISTEN connection per database in a triggerer process, shared by every trigger waiting there
    (a triggerer runs hundreds of triggers; each with its own connection would exhaust PostgreSQL's)."""

    def __init__(self, conninfo: Callable[[], Any]) -> None:
        self.subscribers: set[Subscriber] = set()
        self.listener = CallbackListener(conninfo, self._hear, self._health)
        self.task: asyncio.Task[None] | None = None

    def _hear(self, urn: str) -> None:
        for subscriber in list(self.subscribers):
            subscriber.hear(urn)

    def _health(self, healthy: bool) -> None:
        for subscriber in list(self.subscribers):
            subscriber.set_hearing(healthy)

    def add(self, subscriber: Subscriber) -> None:
        self.subscribers.add(subscriber)
        if self.listener.healthy is not None:  # known already: listening (this trigger looks once), or not
            subscriber.set_hearing(self.listener.healthy)
        if self.task is None:
            self.task = asyncio.create_task(self.listener.run(), name="aps-callback-listener")

    async def remove(self, subscriber: Subscriber) -> bool:
        """Forget `subscriber`; stop listening when it was the last one (True then)."""
        self.subscribers.discard(subscriber)
        if self.subscribers or self.task is None:
            return False
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
        return True


#: The hubs of this process, per (connection id, event loop): a hub's task belongs to its loop.
_HUBS: dict[tuple[str, int], CallbackHub] = {}


@contextlib.asynccontextmanager
async def subscribed(
    conn_id: str, conninfo: Callable[[], Any], subscriber: Subscriber
) -> AsyncIterator[None]:
    """Let `subscriber` hear the callbacks on `conn_id`'s database for the body's duration."""
    key = (conn_id, id(asyncio.get_running_loop()))
    hub = _HUBS.get(key)
    if hub is None:
        hub = _HUBS[key] = CallbackHub(conninfo)
    hub.add(subscriber)
    try:
        yield
    finally:
        if await hub.remove(subscriber) and _HUBS.get(key) is hub:
            del _HUBS[key]
