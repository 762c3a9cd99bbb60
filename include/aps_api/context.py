"""The app's long-lived parts (engine, APS client, caches, limiters, metrics), built at start-up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from cachetools import TTLCache
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aps_api import queries
from aps_api.db import POOL_TIMEOUT_SECONDS, FifoGate, create_reader_engine
from aps_api.key_verifier import APIKeyVerifier, KeyIdentity
from aps_api.metrics import APIMetrics
from aps_api.ratelimit import RateLimit
from aps_api.settings import APISettings
from aps_api.token_cache import ViewerTokenCache
from aps_api.viewer_sessions import ViewerSessions
from aps_api.webhooks import WebhookReceiver


@dataclass
class APIContext:
    settings: APISettings
    metrics: APIMetrics = field(default_factory=APIMetrics)
    engine: AsyncEngine | None = None
    db_gate: FifoGate | None = None  # in front of the engine's pool: see connect()
    aps: Any = None  # aps_client.AsyncAPSClient, or None when no APS credentials are configured
    tokens: ViewerTokenCache | None = None
    keys: APIKeyVerifier | None = None
    limiter: RateLimit | None = None  # requests per API key
    key_limiters: dict[str, RateLimit] = field(default_factory=dict)  # keys with their own limit, by name
    sessions: ViewerSessions | None = None  # the /viewer page's cookies; None without a signing secret
    # Translated models by id (urn, region) for the viewer-token hot path; see settings.model_cache_seconds.
    translated_models: TTLCache[int, tuple[str, str]] | None = None
    webhooks: WebhookReceiver | None = None  # APS's callbacks; None unless configured
    # (monotonic time, message) of the last failed APS check in /health, to answer repeats from memory.
    aps_health_failure: tuple[float, str] | None = None

    async def start(self) -> None:
        settings = self.settings
        self.engine = create_reader_engine(settings.database_url.get_secret_value(), settings.db_pool_size)
        self.db_gate = FifoGate(settings.db_pool_size, timeout=POOL_TIMEOUT_SECONDS)
        invalid_keys = RateLimit.per_minute(settings.invalid_key_limit_per_minute, "invalid-keys")
        self.keys = APIKeyVerifier(
            self._lookup_key, ttl=settings.api_key_cache_seconds, failures=invalid_keys
        )
        self.limiter = RateLimit.per_minute(settings.rate_limit_per_minute, "key")
        self.key_limiters = {name: RateLimit.per_minute(amount, f"key:{name}")
                             for name, amount in settings.rate_limit_per_key.items()}
        self.translated_models = TTLCache(maxsize=100_000, ttl=settings.model_cache_seconds)
        self.sessions = ViewerSessions.from_settings(settings)
        if settings.webhooks_configured:
            secrets = [settings.webhook_secret.get_secret_value(),
                       settings.webhook_previous_secret.get_secret_value()]
            self.webhooks = WebhookReceiver.create(settings.webhook_database_url.get_secret_value(), secrets)
        if settings.aps_configured:
            self.aps = _viewer_aps_client(settings)
            self.tokens = ViewerTokenCache(
                self._fetch_token,
                refresh_margin=settings.token_refresh_margin_seconds,
                max_entries=settings.token_cache_max_entries,
                metrics=self.metrics,
            )

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection of the reader engine, requests served first come, first served (FifoGate)."""
        assert self.engine is not None
        assert self.db_gate is not None
        async with self.db_gate.place(), self.engine.connect() as conn:
            yield conn

    def limiter_for(self, key_name: str) -> RateLimit:
        """The rate limit of the API key named `key_name`: its own if it has one, else the default."""
        assert self.limiter is not None
        return self.key_limiters.get(key_name, self.limiter)

    async def close(self) -> None:
        if self.aps is not None:
            await self.aps.aclose()
        if self.webhooks is not None:
            await self.webhooks.close()
        if self.engine is not None:
            await self.engine.dispose()

    async def _lookup_key(self, key_hash: str) -> KeyIdentity | None:
        async with self.connect() as conn:
            return await queries.find_active_key(conn, key_hash)

    async def _fetch_token(self, scopes: list[str]) -> Any:
        from aps_client.viewer import mint_viewer_token

        (scope,) = scopes  # the cache asks for one scope at a time
        return await mint_viewer_token(self.aps, scope)


def _viewer_aps_client(settings: APISettings) -> Any:
    # Imported here so the rest of the API (and its tests of pure logic) does not need the APS client.
    from aps_client import APSConfig, AsyncAPSClient
    from aps_client.viewer import viewer_client_config

    credentials = APSConfig(client_id=settings.aps_client_id, client_secret=settings.aps_client_secret,
                            base_url=settings.aps_base_url)
    # The API's own cache decides freshness; the client's cache must not hand back a token that the API
    # would consider stale already.
    return AsyncAPSClient(viewer_client_config(
        credentials, token_refresh_margin=settings.token_refresh_margin_seconds))
