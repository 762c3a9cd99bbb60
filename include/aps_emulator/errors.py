"""Error answers in the shape each APS service uses (aps-api.md §1 "Error body shapes")."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

AUTH_DOC_URL = "https://aps.autodesk.com/en/docs/oauth/v2/developers_guide/error_handling/"


class APSHTTPError(Exception):
    """Raised by route code; turned into a JSON response with exactly `body`."""

    def __init__(self, status_code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status_code}: {body}")
        self.status_code = status_code
        self.body = body
        self.headers = headers or {}


def oss_error(status_code: int, reason: str) -> APSHTTPError:
    return APSHTTPError(status_code, {"reason": reason})


def md_error(status_code: int, diagnostic: str) -> APSHTTPError:
    return APSHTTPError(status_code, {"diagnostic": diagnostic})


def auth_error(status_code: int, code: str, message: str) -> APSHTTPError:
    return APSHTTPError(status_code, auth_body(code, message))


def auth_body(code: str, message: str) -> dict[str, Any]:
    return {"developerMessage": message, "errorCode": code, "more info": AUTH_DOC_URL}


def webhook_error(status_code: int, code: str, detail: str) -> APSHTTPError:
    return APSHTTPError(status_code, {"id": str(uuid.uuid4()), "status": status_code, "code": code,
                                      "detail": [detail]})


def body_for_path(path: str, status_code: int, message: str) -> dict[str, Any]:
    """The error body shape of the service that owns `path`."""
    if path.startswith("/modelderivative"):
        return {"diagnostic": message}
    if path.startswith("/oss"):
        return {"reason": message}
    if path.startswith("/webhooks"):
        return {"id": str(uuid.uuid4()), "status": status_code, "code": "BAD_INPUT", "detail": [message]}
    return auth_body("AUTH-008", message)


async def handle_aps_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APSHTTPError)
    return JSONResponse(exc.body, status_code=exc.status_code, headers=exc.headers)


async def handle_validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI's 422 becomes APS's 400 with the owning service's body shape."""
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in error.get('loc', ()))}: {error.get('msg', 'invalid')}"
        for error in exc.errors()
    )
    return JSONResponse(body_for_path(request.url.path, 400, f"Invalid request: {problems}"), status_code=400)


async def handle_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own answers (no such route: 404, wrong method: 405) in the owning service's shape."""
    assert isinstance(exc, HTTPException)
    body = body_for_path(request.url.path, exc.status_code, str(exc.detail))
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)
