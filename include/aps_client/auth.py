"""2-legged tokens (aps-api.md §2.1) and the process-wide token cache.

One cache per process, shared by every APSClient and AsyncAPSClient: a token is reused until
`token_refresh_margin` seconds before it expires. Keys are (base_url, client_id, a fingerprint of the
secret, scope set), so two configurations never hand each other tokens. Threads fetching the same key wait
on one threading.Lock; tasks on one event loop wait on one asyncio.Lock (per loop, since asyncio locks must
not be shared across loops). The fetch itself goes through the transport like any other call, so it gets
the same retries and rate limiting.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import threading
import time
import weakref

import httpx

from aps_client.config import APSConfig
from aps_client.errors import APSAuthError, describe_body
from aps_client.models import Token

TOKEN_PATH = "/authentication/v2/token"

CacheKey = tuple[str, str, str, frozenset[str]]


def cache_key(config: APSConfig, scopes: tuple[str, ...]) -> CacheKey:
    # A hash of the secret, not the secret: keeps a wrong-secret client from reusing a good client's token.
    fingerprint = hashlib.sha256(config.client_secret.get_secret_value().encode()).hexdigest()[:16]
    return (config.base_url, config.client_id, fingerprint, frozenset(scopes))


class TokenCache:
    """Tokens by key, plus the locks that make sure only one fetch per key runs at a time."""

    def __init__(self) -> None:
        self._tokens: dict[CacheKey, Token] = {}
        self._guard = threading.Lock()
        self._thread_locks: dict[CacheKey, threading.Lock] = {}
        self._loop_locks: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[CacheKey, asyncio.Lock]
        ] = weakref.WeakKeyDictionary()

    def get(self, key: CacheKey, margin: float) -> Token | None:
        with self._guard:
            token = self._tokens.get(key)
        if token is None or token.expires_within(margin):
            return None
        return token

    def put(self, key: CacheKey, token: Token) -> None:
        with self._guard:
            self._tokens[key] = token

    def invalidate(self, key: CacheKey, token: Token | None = None) -> None:
        """Drop the cached token; if `token` is given, only when it is still the cached one (another
        thread may already have replaced it with a fresh token)."""
        with self._guard:
            current = self._tokens.get(key)
            if current is not None and (token is None or current.access_token == token.access_token):
                del self._tokens[key]

    def clear(self) -> None:
        with self._guard:
            self._tokens.clear()

    def thread_lock(self, key: CacheKey) -> threading.Lock:
        with self._guard:
            return self._thread_locks.setdefault(key, threading.Lock())

    def loop_lock(self, key: CacheKey) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._guard:
            return self._loop_locks.setdefault(loop, {}).setdefault(key, asyncio.Lock())


TOKENS = TokenCache()


def clear_token_cache() -> None:
    """Forget every cached token in this process (tests; credential rotation)."""
    TOKENS.clear()


def token_request_headers(config: APSConfig) -> dict[str, str]:
    pair = f"{config.client_id}:{config.client_secret.get_secret_value()}".encode()
    return {
        "Authorization": "Basic " + base64.b64encode(pair).decode("ascii"),
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json",
    }


def token_request_form(scopes: tuple[str, ...]) -> dict[str, str]:
    return {"grant_type": "client_credentials", "scope": " ".join(scopes)}


def parse_token(response: httpx.Response, scopes: tuple[str, ...], config: APSConfig) -> Token:
    try:
        body = response.json()
        access_token = body["access_token"]
        expires_in = int(body["expires_in"])
    except (ValueError, KeyError, TypeError) as exc:
        raise APSAuthError(
            f"token endpoint answered without a usable token for client id {config.client_id!r}",
            status_code=response.status_code,
            body=None,
        ) from exc
    return Token(
        access_token=access_token,
        token_type=body.get("token_type", "Bearer"),
        expires_in=expires_in,
        expires_at=time.time() + expires_in,
        scopes=scopes,
    )


def auth_failure(error_body: object, status: int | None, client_id: str) -> str:
    detail = describe_body(error_body) if isinstance(error_body, dict | str) else ""
    return (
        f"APS refused the credentials of client id {client_id!r} ({status}{': ' + detail if detail else ''})"
    )
