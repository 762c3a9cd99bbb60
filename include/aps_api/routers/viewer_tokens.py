"""Viewer tokens: `/v1/models/{id}/viewer-token` (API key) and `/viewer/viewer-token?urn=` (the viewer
page's session cookie). Both hand out the same short-lived, narrow APS token for a translated model."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status

from aps_api import queries
from aps_api.context import APIContext
from aps_api.deps import Context, ModelId, require_api_key, require_viewer_session
from aps_api.errors import VIEWER_TOKENS_NOT_CONFIGURED, APSUnavailable, model_not_found
from aps_api.query_params import known_query_only
from aps_api.schemas import (
    AUTH_ERRORS,
    DATABASE_ERRORS,
    INVALID_PARAMETERS,
    NOT_FOUND,
    ErrorBody,
    ViewerToken,
)
from aps_client.regions import viewer_api
from aps_client.viewer import viewer_scope
from aps_results.models import ModelStatus

log = logging.getLogger("aps_api")

router = APIRouter(tags=["viewer"])

_TOKEN_ERRORS: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "the model is not (successfully) translated"},
    502: {"model": ErrorBody, "description": "APS did not issue a token"},
    503: {**DATABASE_ERRORS[503], "description": "viewer tokens are not configured on this server, or the "
                                                  "results database is unavailable"},
    **INVALID_PARAMETERS,
}


async def _translated(context: APIContext, model_id: int) -> tuple[str, str]:
    """(urn, region) of a successfully translated model; 404 or 409 otherwise."""
    # Hot path: the model usually comes from a short-lived cache and the token from the token cache, so a
    # request costs no I/O at all.
    assert context.translated_models is not None
    translated = context.translated_models.get(model_id)
    if translated is not None:
        return translated
    async with context.connect() as conn:
        row = await queries.get_model_for_token(conn, model_id)
    if row is None:
        raise model_not_found(model_id)
    if row.status != ModelStatus.SUCCESS or not row.urn:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=f"model {model_id} is not translated (status: {row.status}); viewer tokens are issued "
            "only once its translation has succeeded",
        )
    translated = (row.urn, row.region)
    context.translated_models[model_id] = translated
    return translated


async def _viewer_token(context: APIContext, model_id: int, response: Response) -> dict[str, Any]:
    urn, region = await _translated(context, model_id)
    if context.tokens is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=VIEWER_TOKENS_NOT_CONFIGURED)
    scope = viewer_scope(context.settings.token_mode, urn)
    try:
        token = await context.tokens.get(scope)
    except Exception as exc:  # aps_client errors carry no secrets; report the kind and status only
        code = getattr(exc, "status_code", None)
        log.warning("viewer token request to APS failed: %s (status %s)", type(exc).__name__, code)
        raise APSUnavailable(
            f"APS did not issue a viewer token ({type(exc).__name__}"
            + (f", HTTP {code}" if code else "")
            + "); try again shortly"
        ) from None
    response.headers["Cache-Control"] = "no-store"
    return {
        "access_token": token.access_token,
        "token_type": token.token_type,
        "expires_in": token.expires_in(context.tokens.now()),
        "urn": urn,
        "region": region,
        "viewer_api": viewer_api(region),
        "scope": scope,
    }


@router.get(
    "/v1/models/{model_id}/viewer-token",
    response_model=ViewerToken,
    summary="A short-lived APS token for the Viewer",
    dependencies=[Depends(require_api_key), Depends(known_query_only)],
    responses={**AUTH_ERRORS, **NOT_FOUND, **_TOKEN_ERRORS},
)
async def viewer_token(model_id: ModelId, context: Context, response: Response) -> dict[str, Any]:
    return await _viewer_token(context, model_id, response)


@router.get(
    "/viewer/viewer-token",
    response_model=ViewerToken,
    summary="A viewer token for the viewer page (session cookie, see /viewer/session)",
    dependencies=[Depends(require_viewer_session), Depends(known_query_only)],
    responses={
        401: {"model": ErrorBody, "description": "no viewer session, or it expired, or its key was revoked"},
        404: {"model": ErrorBody, "description": "no model with this URN"},
        429: AUTH_ERRORS[429],
        **_TOKEN_ERRORS,
    },
)
async def viewer_page_token(
    context: Context,
    response: Response,
    urn: Annotated[
        str, Query(min_length=1, max_length=1024, pattern=r"^[^\x00]*$", description="the model's URN")
    ],
) -> dict[str, Any]:
    async with context.connect() as conn:
        model_id = await queries.model_id_for_urn(conn, urn)
    if model_id is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no model with this URN")
    return await _viewer_token(context, model_id, response)
