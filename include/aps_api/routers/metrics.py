"""`GET /metrics` in the Prometheus text format (no key: scrapers rarely carry one; nothing secret in it)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from aps_api.deps import Context

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(context: Context) -> Response:
    body, content_type = context.metrics.render()
    return Response(body, media_type=content_type)
