"""The FastAPI application factory: `create_app(settings)`; `aps-api` serves `create_app()` with uvicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from aps_api import __version__
from aps_api.context import APIContext
from aps_api.errors import install_error_handlers
from aps_api.metrics import MetricsMiddleware
from aps_api.routers import (
    documents,
    health,
    ids,
    metrics,
    models,
    search,
    viewer_page,
    viewer_tokens,
    webhooks,
)
from aps_api.settings import APISettings

DESCRIPTION = """Read-only access to the APS pipeline's results, and short-lived APS Viewer tokens.

Every `/v1` route needs an API key (`Authorization: Bearer <key>`; create one with
`aps-api keys create NAME`); the `/viewer` page signs in once with a key and then uses an HttpOnly
session cookie. Errors are JSON `{"detail": ...}`. Listings are paginated with an opaque
`cursor`: pass back the `next_cursor` of the previous page until it is null.
"""


def create_app(settings: APISettings | None = None) -> FastAPI:
    """Build the app. Without `settings`, they are read from the `APS_API_*` environment variables."""
    context = APIContext(settings or APISettings())  # type: ignore[call-arg]  # read from the environment

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await context.start()
        try:
            yield
        finally:
            await context.close()

    app = FastAPI(
        title="APS results API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.context = context
    install_error_handlers(app)
    for module in (health, models, documents, search, ids,
                   viewer_tokens, metrics, viewer_page):
        app.include_router(module.router)
    if context.settings.webhooks_configured:  # the one route that writes: only when asked for
        app.include_router(webhooks.router)
    app.mount(viewer_page.ASSETS_PATH, StaticFiles(directory=viewer_page.ASSETS_DIR),
              name="viewer-assets")
    if context.settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=context.settings.cors_origins,
            allow_methods=["GET"],
            allow_headers=["Authorization"],
        )
    app.add_middleware(MetricsMiddleware, metrics=context.metrics)
    return app
