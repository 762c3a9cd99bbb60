"""Webhooks for Model Derivative events (aps-api.md §2.16): create, list, get, update, delete hooks, and the
app's secret token.

Hooks live per region (header `x-ads-region` wins over query `region`); a hook read with another region is
404. A secret for x-adsk-signature comes from POST /webhooks/v1/tokens (the app-wide token, as APS does) or
from a `token` field on the hook (create or PATCH; APS documents it for PATCH). Delivery: webhook_delivery.py.
JSONPath `filter`s are stored and echoed but not applied.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, ValidationError

from aps_emulator.bodies import hook_body
from aps_emulator.context import EmulatorContext, get_context
from aps_emulator.errors import webhook_error
from aps_emulator.regions import webhooks_region
from aps_emulator.security import Caller, authenticated
from aps_emulator.state import HookRecord

router = APIRouter()

SYSTEMS = {"derivative": ("extraction.finished", "extraction.updated", "extraction.*")}
MAX_HOOKS_PER_SCOPE = 1000
PAGE_SIZE = 200
READ = ("data:read",)
WRITE = ("data:read", "data:write")


def _check_system(system: str, event: str | None = None) -> None:
    if system not in SYSTEMS:
        raise webhook_error(400, "BAD_INPUT", f"Unsupported system '{system}'")
    if event is not None and event not in SYSTEMS[system]:
        raise webhook_error(400, "BAD_INPUT", f"Unsupported event '{event}' for system '{system}'")


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError as exc:
        raise webhook_error(400, "BAD_INPUT", "The request body is not valid JSON") from exc


class CreateHook(BaseModel):
    model_config = ConfigDict(extra="allow")
    callbackUrl: str
    scope: dict[str, Any]
    hookAttribute: dict[str, Any] | None = None
    filter: str | None = None
    hookExpiry: str | None = None
    autoReactivateHook: bool = False
    callbackWithEventPayloadOnly: bool = False
    token: str | None = None


@router.post("/webhooks/v1/systems/{system}/events/{event}/hooks", name="hooks_create")
async def create_hook(request: Request, system: str, event: str,
                      caller: Annotated[Caller, Depends(authenticated)]) -> Response:
    caller.require(WRITE)
    context = get_context(request)
    _check_system(system, event)
    region = webhooks_region(request)
    try:
        body = CreateHook.model_validate(await _json(request))
    except ValidationError as exc:
        raise webhook_error(400, "BAD_INPUT", f"Invalid hook: {exc.errors()[0].get('msg')}") from exc
    if not body.callbackUrl.startswith(("http://", "https://")):
        raise webhook_error(400, "BAD_INPUT", "callbackUrl must be an http(s) URL")
    workflow = body.scope.get("workflow")
    if not isinstance(workflow, str) or not workflow:
        raise webhook_error(400, "BAD_INPUT", "scope.workflow is required for Model Derivative hooks")
    with context.store.lock:
        same_scope = [h for h in context.store.state.hooks.values()
                      if (h.region, h.system, h.event, h.scope) == (region, system, event, body.scope)]
        if any(h.callback_url == body.callbackUrl for h in same_scope):
            raise webhook_error(409, "CONFLICT_ERROR",
                                "Hook already exists for this callbackUrl, scope and event")
        if len(same_scope) >= MAX_HOOKS_PER_SCOPE:
            raise webhook_error(400, "BAD_INPUT", "Failed to create more than 1000 hooks for same scope")
        hook = HookRecord(
            hook_id=str(uuid.uuid4()), region=region, system=system, event=event,
            callback_url=body.callbackUrl, scope=body.scope, hook_attribute=body.hookAttribute,
            filter=body.filter, created_by=caller.client_id,
            created_ms=context.clock.now_ms(), auto_reactivate=body.autoReactivateHook,
            hook_expiry=body.hookExpiry, payload_only=body.callbackWithEventPayloadOnly, secret=body.token,
        )
        context.store.state.hooks[hook.hook_id] = hook
        context.store.mark_dirty()
    location = f"/webhooks/v1/systems/{system}/events/{event}/hooks/{hook.hook_id}"
    return Response(status_code=201, headers={"Location": location})


def _list(context: EmulatorContext, request: Request, caller: Caller, system: str | None,
          event: str | None) -> JSONResponse:
    region = webhooks_region(request)
    hooks = sorted(
        (h for h in context.store.state.hooks.values()
         if h.region == region and h.created_by == caller.client_id
         and (system is None or h.system == system) and (event is None or h.event == event)),
        key=lambda h: (h.created_ms, h.hook_id),
    )
    try:
        start = int(request.query_params.get("pageState") or 0)
    except ValueError:
        start = 0
    page = hooks[start:start + PAGE_SIZE]
    links: dict[str, str] = {}  # the spec's `next` is a string, not nullable: left out on the last page
    if start + PAGE_SIZE < len(hooks):
        links["next"] = f"{request.url.path}?pageState={start + PAGE_SIZE}"
    return JSONResponse({"links": links, "data": [hook_body(h) for h in page]})


@router.get("/webhooks/v1/hooks", name="hooks_list")
async def list_all_hooks(request: Request, caller: Annotated[Caller, Depends(authenticated)]) -> JSONResponse:
    caller.require(READ)
    return _list(get_context(request), request, caller, None, None)


@router.get("/webhooks/v1/systems/{system}/hooks", name="hooks_list")
async def list_system_hooks(request: Request, system: str,
                            caller: Annotated[Caller, Depends(authenticated)]) -> JSONResponse:
    caller.require(READ)
    _check_system(system)
    return _list(get_context(request), request, caller, system, None)


@router.get("/webhooks/v1/systems/{system}/events/{event}/hooks", name="hooks_list")
async def list_event_hooks(request: Request, system: str, event: str,
                           caller: Annotated[Caller, Depends(authenticated)]) -> JSONResponse:
    caller.require(READ)
    _check_system(system, event)
    return _list(get_context(request), request, caller, system, event)


def _find(context: EmulatorContext, request: Request, caller: Caller, system: str, event: str,
          hook_id: str) -> HookRecord:
    hook = context.store.state.hooks.get(hook_id)
    if (hook is None or hook.region != webhooks_region(request) or hook.created_by != caller.client_id
            or (hook.system, hook.event) != (system, event)):
        raise webhook_error(404, "NOT_FOUND", f"Hook {hook_id} was not found")
    return hook


@router.get("/webhooks/v1/systems/{system}/events/{event}/hooks/{hook_id}", name="hooks_get")
async def get_hook(request: Request, system: str, event: str, hook_id: str,
                   caller: Annotated[Caller, Depends(authenticated)]) -> JSONResponse:
    caller.require(READ)
    return JSONResponse(hook_body(_find(get_context(request), request, caller, system, event, hook_id)))


@router.patch("/webhooks/v1/systems/{system}/events/{event}/hooks/{hook_id}", name="hooks_update")
async def update_hook(request: Request, system: str, event: str, hook_id: str,
                      caller: Annotated[Caller, Depends(authenticated)]) -> Response:
    caller.require(WRITE)
    context = get_context(request)
    body = await _json(request)
    if not isinstance(body, dict):
        raise webhook_error(400, "BAD_INPUT", "The body must be a JSON object")
    with context.store.lock:
        hook = _find(context, request, caller, system, event, hook_id)
        if body.get("status") in ("active", "inactive"):
            hook.status = body["status"]
        if "filter" in body:
            hook.filter = body["filter"]
        if "hookAttribute" in body:
            hook.hook_attribute = body["hookAttribute"]
        if "autoReactivateHook" in body:
            hook.auto_reactivate = bool(body["autoReactivateHook"])
        if "token" in body:
            hook.secret = body["token"] or None
        context.store.mark_dirty()
    return JSONResponse(hook_body(hook))


@router.delete("/webhooks/v1/systems/{system}/events/{event}/hooks/{hook_id}", name="hooks_delete")
async def delete_hook(request: Request, system: str, event: str, hook_id: str,
                      caller: Annotated[Caller, Depends(authenticated)]) -> Response:
    caller.require(WRITE)
    context = get_context(request)
    with context.store.lock:
        hook = _find(context, request, caller, system, event, hook_id)
        del context.store.state.hooks[hook.hook_id]
        context.store.mark_dirty()
    return Response(status_code=204)


# -- the application's secret token -------------------------------------------------------------------------
async def _token_value(request: Request) -> str:
    body = await _json(request)
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise webhook_error(400, "BAD_INPUT", "'token' is required")
    return token


@router.post("/webhooks/v1/tokens", name="webhook_token_create")
async def create_token(request: Request, caller: Annotated[Caller, Depends(authenticated)]) -> JSONResponse:
    caller.require(WRITE)
    context = get_context(request)
    token = await _token_value(request)
    with context.store.lock:
        if caller.client_id in context.store.state.webhook_tokens:
            raise webhook_error(400, "BAD_INPUT", "Secret token already exists")
        context.store.state.webhook_tokens[caller.client_id] = token
        context.store.mark_dirty()
    return JSONResponse({"status": 200, "detail": ["Token created successfully for client: *****"]})


@router.put("/webhooks/v1/tokens/@me", name="webhook_token_update")
async def update_token(request: Request, caller: Annotated[Caller, Depends(authenticated)]) -> Response:
    caller.require(WRITE)
    context = get_context(request)
    token = await _token_value(request)
    with context.store.lock:
        context.store.state.webhook_tokens[caller.client_id] = token
        context.store.mark_dirty()
    return Response(status_code=204)


@router.delete("/webhooks/v1/tokens/@me", name="webhook_token_delete")
async def delete_token(request: Request, caller: Annotated[Caller, Depends(authenticated)]) -> Response:
    caller.require(WRITE)
    context = get_context(request)
    with context.store.lock:
        context.store.state.webhook_tokens.pop(caller.client_id, None)
        context.store.mark_dirty()
    return Response(status_code=204)
