"""Run-time control for tests and benchmarks, no auth (contract: README.md, "Control API")."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from aps_emulator.context import get_context
from aps_emulator.settings import Tunables

router = APIRouter(prefix="/_emulator")


@router.post("/reset", name="control_reset")
async def reset(request: Request) -> JSONResponse:
    get_context(request).reset()
    return JSONResponse({"result": "reset"})


@router.get("/config", name="control_config")
async def read_config(request: Request) -> JSONResponse:
    return JSONResponse(get_context(request).tunables.model_dump(mode="json"))


@router.put("/config", name="control_configure")
async def configure(request: Request) -> JSONResponse:
    context = get_context(request)
    try:
        changes = await request.json()
    except ValueError:
        return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
    if not isinstance(changes, dict):
        return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
    unknown = sorted(set(changes) - set(Tunables.model_fields))
    if unknown:
        return JSONResponse({"error": f"unknown setting(s): {', '.join(unknown)}",
                             "known": sorted(Tunables.model_fields)}, status_code=400)
    try:
        context.tunables = Tunables.model_validate({**context.tunables.model_dump(), **changes})
    except ValidationError as exc:
        return JSONResponse({"error": "invalid value(s)", "details": exc.errors(include_url=False)},
                            status_code=400)
    return JSONResponse(context.tunables.model_dump(mode="json"))


@router.get("/stats", name="control_stats")
async def stats(request: Request) -> JSONResponse:
    return JSONResponse(get_context(request).stats.snapshot())


@router.post("/clock", name="control_clock")
async def advance_clock(request: Request) -> JSONResponse:
    context = get_context(request)
    try:
        body: Any = await request.json()
        seconds = float(body["advance_seconds"])
        context.advance_clock(seconds)
    except (ValueError, KeyError, TypeError) as exc:
        return JSONResponse({"error": f"expected {{\"advance_seconds\": n >= 0}}: {exc}"}, status_code=400)
    return JSONResponse({"now": context.clock.now(), "offset_seconds": context.clock.offset})


@router.get("/clock", name="control_clock_read")
async def read_clock(request: Request) -> JSONResponse:
    context = get_context(request)
    return JSONResponse({"now": context.clock.now(), "offset_seconds": context.clock.offset})


@router.get("/deliveries", name="control_deliveries")
async def deliveries(request: Request) -> JSONResponse:
    """Webhook callbacks sent so far (attempts, last status, delivered or not)."""
    records = get_context(request).store.state.deliveries
    return JSONResponse([record.model_dump() for record in records])
