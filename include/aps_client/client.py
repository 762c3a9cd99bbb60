"""The two entry points: APSClient (blocking; tasks and scripts) and AsyncAPSClient (triggers, the API).
One client per APS API hangs off each: `.oss`, `.derivative`, `.webhooks`."""

from __future__ import annotations

from types import TracebackType

import httpx

from aps_client.config import APSConfig
from aps_client.derivative import AsyncDerivativeClient, DerivativeClient
from aps_client.models import Token
from aps_client.oss import AsyncOSSClient, OSSClient
from aps_client.transport import AsyncTransport, SyncTransport
from aps_client.webhooks import AsyncWebhooksClient, WebhooksClient


class APSClient:
    def __init__(self, config: APSConfig, *, http: httpx.Client | None = None) -> None:
        self.config = config
        self.transport = SyncTransport(config, http)
        self.oss = OSSClient(self.transport)
        self.derivative = DerivativeClient(self.transport)
        self.webhooks = WebhooksClient(self.transport)

    def get_token(self, scopes: tuple[str, ...] | list[str] | None = None) -> Token:
        """A 2-legged token for `scopes` (default: config.scopes), from the process-wide cache if fresh."""
        return self.transport.token(tuple(scopes) if scopes else None)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> APSClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"APSClient(client_id={self.config.client_id!r}, base_url={self.config.base_url!r})"


class AsyncAPSClient:
    def __init__(self, config: APSConfig, *, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self.transport = AsyncTransport(config, http)
        self.oss = AsyncOSSClient(self.transport)
        self.derivative = AsyncDerivativeClient(self.transport)
        self.webhooks = AsyncWebhooksClient(self.transport)

    async def get_token(self, scopes: tuple[str, ...] | list[str] | None = None) -> Token:
        return await self.transport.token(tuple(scopes) if scopes else None)

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def close(self) -> None:
        await self.aclose()

    async def __aenter__(self) -> AsyncAPSClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncAPSClient(client_id={self.config.client_id!r}, base_url={self.config.base_url!r})"
