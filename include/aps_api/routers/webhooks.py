"""`POST /v1/aps/webhooks/extraction-finished`: APS's extraction.finished callbacks (aps_api.webhooks).

No API key (APS cannot send one): the `x-adsk-signature` HMAC of the body is the authentication. Mounted
only when the server has a hook secret and a receiver database URL (`APS_API_WEBHOOK_*`)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status

from aps_api.deps import Context
from aps_api.webhooks import MAX_BODY_BYTES, BadCallback, parse_callback

PATH = "/v1/aps/webhooks/extraction-finished"

router = APIRouter(tags=["webhooks"])


async def _body(request: Request) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, detail="callback body too large")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    PATH,
    summary="APS extraction.finished callback (signed; recorded once per delivery id)",
    responses={401: {"description": "missing or wrong x-adsk-signature"},
               400: {"description": "signed, but not a callback"}},
)
async def extraction_finished(request: Request, context: Context) -> dict[str, str]:
    receiver = context.webhooks
    if receiver is None:  # not mounted without one; kept for safety
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="webhooks are not configured")
    raw = await _body(request)
    if not receiver.verified(raw, request.headers.get("x-adsk-signature", "")):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="missing or wrong x-adsk-signature")
    try:
        callback = parse_callback(raw, request.headers.get("x-adsk-delivery-id"))
    except BadCallback as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from exc
    recorded = await receiver.record(callback)
    return {"result": "recorded" if recorded else "duplicate"}
