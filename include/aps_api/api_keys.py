"""Creating, listing and revoking API keys. Needs a database URL with write access to `aps.api_keys`
(the server itself only reads). Used by `aps-api keys ...`; usable from code (demo, tests) as well."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import create_engine, func, insert, select, update
from sqlalchemy.engine import Engine

from aps_api.apikeys import display_prefix, generate_api_key, hash_api_key
from aps_results.models import ApiKey


@dataclass(frozen=True)
class CreatedKey:
    id: int
    name: str
    key: str  # shown once; only its hash is stored

    def __repr__(self) -> str:  # keep the key out of logs and tracebacks
        return f"CreatedKey(id={self.id}, name={self.name!r}, key='{display_prefix(self.key)}...')"


@dataclass(frozen=True)
class KeyInfo:
    id: int
    name: str
    key_prefix: str
    created_at: datetime
    revoked_at: datetime | None


def _engine(db_url: str) -> Engine:
    return create_engine(db_url, pool_pre_ping=False)


def create_key(db_url: str, name: str) -> CreatedKey:
    if not name.strip():
        raise ValueError("a key needs a non-empty name (who or what uses it)")
    key = generate_api_key()
    engine = _engine(db_url)
    try:
        with engine.begin() as conn:
            key_id = conn.execute(
                insert(ApiKey)
                .values(name=name.strip(), key_prefix=display_prefix(key), key_hash=hash_api_key(key))
                .returning(ApiKey.id)
            ).scalar_one()
    finally:
        engine.dispose()
    return CreatedKey(id=key_id, name=name.strip(), key=key)


def list_keys(db_url: str) -> list[KeyInfo]:
    engine = _engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    ApiKey.id, ApiKey.name, ApiKey.key_prefix, ApiKey.created_at, ApiKey.revoked_at
                ).order_by(ApiKey.id)
            ).all()
    finally:
        engine.dispose()
    return [KeyInfo(**row._mapping) for row in rows]


def revoke_key(db_url: str, key_id: int) -> bool:
    """Revoke key `key_id`; False when no active key has that id. Servers stop accepting it within their
    key-cache time (APS_API_API_KEY_CACHE_SECONDS, 30 s by default)."""
    engine = _engine(db_url)
    try:
        with engine.begin() as conn:
            result = conn.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=func.now())
                .returning(ApiKey.id)
            )
            return result.first() is not None
    finally:
        engine.dispose()
