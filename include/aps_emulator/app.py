"""`create_app(settings)`: the emulator as a FastAPI app (used by the CLI and usable in-process)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from aps_emulator.context import EmulatorContext
from aps_emulator.errors import APSHTTPError, handle_aps_error, handle_http_error, handle_validation_error
from aps_emulator.faults import FaultsAndStatsMiddleware
from aps_emulator.paths import CollapseSlashesMiddleware
from aps_emulator.routes import auth, control, derivative, oss, s3, webhooks
from aps_emulator.settings import EmulatorSettings
from aps_emulator.webhook_delivery import WebhookDispatcher


def create_app(settings: EmulatorSettings | None = None) -> FastAPI:
    settings = settings or EmulatorSettings()
    context = EmulatorContext.create(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        dispatcher = WebhookDispatcher(context)
        context.dispatcher = dispatcher
        await dispatcher.start()
        try:
            yield
        finally:
            await dispatcher.stop()
            context.dispatcher = None
            context.store.close()

    app = FastAPI(title="APS emulator", version="1.0", lifespan=lifespan, docs_url="/_emulator/docs",
                  openapi_url="/_emulator/openapi.json", redoc_url=None)
    app.state.emulator = context
    app.add_exception_handler(APSHTTPError, handle_aps_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(HTTPException, handle_http_error)
    app.add_middleware(FaultsAndStatsMiddleware, routes_app=app)
    app.add_middleware(CollapseSlashesMiddleware)  # added last, so it runs first: stats see the clean path

    @app.get("/", name="service_info")
    async def service_info() -> JSONResponse:
        return JSONResponse({"service": "aps-emulator", "clients": sorted(settings.client_secrets()),
                             "control": "/_emulator", "started_at": context.started_at})

    for module in (auth, oss, s3, derivative, webhooks, control):
        app.include_router(module.router)
    return app
