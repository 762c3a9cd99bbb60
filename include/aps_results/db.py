"""Engines for the results database: one place that turns a URL into a psycopg 3 SQLAlchemy engine."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url

URL_ENV = "APS_RESULTS_DB_URL"


def normalize_url(url: str | URL) -> URL:
    """Accept `postgresql://...` too: the loader needs psycopg 3, SQLAlchemy's default driver is psycopg2."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername != "postgresql+psycopg":
        raise ValueError(f"the results database must be PostgreSQL (psycopg 3), not {parsed.drivername!r}")
    return parsed


# Connections a task process uses beside its concurrent work (claims, verdicts, bookkeeping of the loads).
POOL_BASE_CONNECTIONS = 2


def pool_options(concurrency: int) -> dict[str, int]:
    """Pool sizing for a process doing `concurrency` things at once that each hold a connection throughout
    (a streamed load holds one for its whole COPY): those, plus POOL_BASE_CONNECTIONS beside them. The base
    stays open; the rest are opened on demand and closed when returned (SQLAlchemy's overflow)."""
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    return {"pool_size": POOL_BASE_CONNECTIONS, "max_overflow": concurrency + POOL_BASE_CONNECTIONS}


def engine_from_connection(conn: Any, **kwargs: Any) -> Engine:
    """An engine for the database an Airflow-style connection names (login, password, host, port, schema)."""
    url = URL.create("postgresql+psycopg", username=conn.login, password=conn.password or None,
                     host=conn.host, port=conn.port, database=conn.schema or None)
    return make_engine(url, **kwargs)


def url_from_env() -> str:
    url = os.environ.get(URL_ENV)
    if not url:
        raise RuntimeError(f"no results database URL: pass --url or set {URL_ENV}")
    return url


def make_engine(url: str | URL, **kwargs: object) -> Engine:
    """A SQLAlchemy engine for the results database (pre-ping on: connections may idle for hours)."""
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(normalize_url(url), **kwargs)  # type: ignore[arg-type]


def as_engine(url_or_engine: str | URL | Engine) -> tuple[Engine, bool]:
    """(engine, owned): `owned` is True when we created the engine and must dispose of it."""
    if isinstance(url_or_engine, Engine):
        return url_or_engine, False
    return make_engine(url_or_engine), True
