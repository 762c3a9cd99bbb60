"""API keys: what one looks like, how it is stored, and creating, listing and revoking them.

A key is `apsk_` + 43 url-safe random characters (256 bits). Only its SHA-256 is stored: a slow password
hash (bcrypt, argon2) protects low-entropy passwords against guessing, which a 256-bit random key does not
need, and a fast hash keeps every request cheap. The key itself is shown once, when it is created.

Creating, listing and revoking need a database URL with write access to `aps.api_keys` (the server itself
only reads; it checks keys with `aps_api.key_verifier`). Used by `aps-api keys ...`, the demo and tests.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import create_engine, func, insert, select, update
from sqlalchemy.engine import Engine

from aps_results.models import ApiKey

KEY_PREFIX = "apsk_"
# Longer bearer values are not ours: refused without hashing or a database round trip.
MAX_KEY_LENGTH = 200
# How many leading characters of a key are stored in clear to tell keys apart in `aps-api keys list`.
DISPLAY_PREFIX_LENGTH = len(KEY_PREFIX) + 6


def generate_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def looks_like_api_key(key: str) -> bool:
    """Whether `key` could be one of ours at all (cheap, before any lookup)."""
    return key.startswith(KEY_PREFIX) and len(key) <= MAX_KEY_LENGTH


def display_prefix(key: str) -> str:
    return key[:DISPLAY_PREFIX_LENGTH]


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
