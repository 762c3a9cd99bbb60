"""`/viewer`: a page that shows a model in the APS Viewer, its sign-in page, and the key-for-cookie trade.

The API key never reaches the viewer page, where the Viewer's third-party script runs. `/viewer/sign-in`
(scripts from this server only) sends the key once to `/viewer/session`, which answers with an HttpOnly
session cookie (see aps_api.viewer_sessions); the viewer page then gets its viewer tokens from
`/viewer/viewer-token` with that cookie. Both pages carry a strict Content-Security-Policy; the viewer's
allows scripts only from this server and the pinned Viewer version's folder. The Airflow provider's extra
link points at `/viewer?urn=...`.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import HTMLResponse

from aps_api.api_keys import hash_api_key
from aps_api.deps import BearerCredentials, Context, require_api_key
from aps_api.errors import VIEWER_TOKENS_NOT_CONFIGURED
from aps_api.schemas import AUTH_ERRORS, ErrorBody
from aps_api.settings import APISettings
from aps_api.viewer_sessions import COOKIE_NAME

ASSETS_DIR = Path(__file__).resolve().parent.parent / "viewer_assets"
ASSETS_PATH = "/viewer/assets"  # where app.py mounts ASSETS_DIR

router = APIRouter(tags=["viewer"])

_VIEWER_PAGE = (ASSETS_DIR / "viewer.html").read_text(encoding="utf-8")
_SIGN_IN_PAGE = (ASSETS_DIR / "sign-in.html").read_text(encoding="utf-8")
# Hosts the APS Viewer talks to once loaded: the Model Derivative API and the SVF2 streaming CDN.
_APS_API = "https://developer.api.autodesk.com"
_APS_CDN = "cdn.derivative.autodesk.com"
_APS_FONTS = "https://fonts.autodesk.com"

# Headers of both pages: never cached, never framed, nothing leaks through the Referer header.
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
_SIGN_IN_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'; object-src 'none'"
)


def _folder(url: str) -> str:
    return url.rsplit("/", 1)[0] + "/"


def viewer_csp(settings: APISettings) -> str:
    """The viewer page's policy: its own script, and the pinned Viewer's folder (the Viewer loads its worker
    and extensions from there); the Viewer injects styles, fetches from APS and decodes into blobs."""
    viewer = _folder(settings.viewer_js_url)
    styles = _folder(settings.viewer_css_url)
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src 'self' {viewer}",
            f"worker-src blob: {viewer}",
            f"style-src 'self' 'unsafe-inline' {styles}",
            f"font-src {styles} {_APS_FONTS}",
            f"img-src 'self' data: blob: {_APS_API}",
            f"connect-src 'self' {_APS_API} https://{_APS_CDN} wss://{_APS_CDN}",
            "form-action 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
            "object-src 'none'",
        )
    )


@router.get("/viewer", response_class=HTMLResponse, summary="Show a model in the APS Viewer (HTML page)")
async def viewer_page(
    context: Context,
    urn: Annotated[
        str | None, Query(max_length=1024, description="the model's URN (read by the page)")
    ] = None,
) -> HTMLResponse:
    settings = context.settings
    html = _VIEWER_PAGE.format(css=escape(settings.viewer_css_url), js=escape(settings.viewer_js_url))
    return HTMLResponse(html, headers={**_PAGE_HEADERS, "Content-Security-Policy": viewer_csp(settings)})


@router.get(
    "/viewer/sign-in",
    response_class=HTMLResponse,
    summary="Sign in to the viewer page with an API key (HTML page)",
)
async def sign_in_page(
    urn: Annotated[str | None, Query(max_length=1024, description="passed on to the viewer page")] = None,
) -> HTMLResponse:
    return HTMLResponse(_SIGN_IN_PAGE, headers={**_PAGE_HEADERS, "Content-Security-Policy": _SIGN_IN_CSP})


@router.get(
    "/viewer/session",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Trade an API key for the viewer page's session cookie",
    dependencies=[Depends(require_api_key)],
    description="Sets an HttpOnly, SameSite=Strict cookie that lets the viewer page fetch viewer tokens "
    "(nothing else) until it expires or the key is revoked. The key itself is never stored in the browser.",
    responses={
        204: {"description": "session cookie set"},
        **AUTH_ERRORS,
        503: {"model": ErrorBody, "description": "viewer tokens are not configured on this server"},
    },
)
async def viewer_session(credentials: BearerCredentials, context: Context, request: Request) -> Response:
    if context.sessions is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=VIEWER_TOKENS_NOT_CONFIGURED)
    assert credentials is not None  # require_api_key has checked it
    response = Response(status_code=status.HTTP_204_NO_CONTENT, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        COOKIE_NAME,
        context.sessions.issue(hash_api_key(credentials.credentials)),
        max_age=context.sessions.lifetime_seconds,
        path=request.scope.get("root_path", "") + "/viewer",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response
