"""Every error leaves the API as JSON `{"detail": ...}` with a clear message and no internals.

FastAPI already answers HTTPException and validation errors (422) that way; this adds the database being
unreachable or its connection pool exhausted (503) and a last-resort handler (500) that logs the exception
but never echoes it.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

log = logging.getLogger("aps_api")

VIEWER_TOKENS_NOT_CONFIGURED = (
    "viewer tokens are not configured: set APS_API_APS_CLIENT_ID and APS_API_APS_CLIENT_SECRET"
)


def model_not_found(model_id: int) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"model {model_id} not found")


class APSUnavailable(Exception):
    """APS could not issue a viewer token; the message is safe to show (no secrets, no token)."""


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(PoolTimeout)
    async def database_unavailable(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        # The driver message can include host names; log the class only, answer with a fixed text.
        orig = getattr(exc, "orig", None)
        log.warning(
            "results database unavailable for %s %s: %s",
            request.method,
            request.url.path,
            type(orig or exc).__name__,
        )
        return JSONResponse(
            {"detail": "the results database is unavailable; try again shortly"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(APSUnavailable)
    async def aps_unavailable(request: Request, exc: APSUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_502_BAD_GATEWAY)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(
            {"detail": "internal server error"}, status_code=status.HTTP_500_INTERNAL_SERVER_ERROR
        )
