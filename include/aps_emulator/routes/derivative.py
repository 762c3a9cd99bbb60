"""Model Derivative: job, manifest, views, object tree, properties, thumbnail, formats (aps-api.md §2.8-2.15).

Jobs and manifests are kept per region (header `region`, default US); asking with another region gives 404.
"""

from __future__ import annotations

import fnmatch
import json
import re
from email.utils import formatdate, parsedate_to_datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aps_emulator import real_shapes
from aps_emulator.content.checks import (
    EXTRACTOR_FAILURE,
    content_problems,
    source_supported,
    supported_formats,
)
from aps_emulator.content.loader import build_content
from aps_emulator.content.model import ModelContent
from aps_emulator.context import EmulatorContext, get_context
from aps_emulator.errors import APSHTTPError, md_error
from aps_emulator.manifests import GEOMETRY_TYPES, manifest_body, views
from aps_emulator.manifests import job_status as status_of
from aps_emulator.regions import md_region
from aps_emulator.retention import drop_expired_objects
from aps_emulator.routes.oss import access_of
from aps_emulator.security import Caller, authenticated
from aps_emulator.state import JobRecord, job_ref, object_ref
from aps_emulator.thumbnail import render_png
from aps_emulator.urns import decode_urn, encode_urn, split_object_id

router = APIRouter()

# aps-api.md §4.2: the manifest takes data:read or viewables:read; metadata, tree, properties(:query) and
# the thumbnail need data:read (a data:read:<urn> scope counts for its own design, see security.py).
MANIFEST_READ = (("data:read",), ("viewables:read",))
DATA_READ = (("data:read",),)
OUTPUT_TYPES = ("svf", "svf2", "thumbnail", "stl", "step", "iges", "obj", "ifc", "dwg", "fbx")
THUMBNAIL_SIZES = (100, 200, 400)
FORMATS_LAST_MODIFIED = 1_704_067_200  # 2024-01-01, the date the served formats list "changed"
WORKFLOW = re.compile(r"^[A-Za-z0-9-]{1,36}$")


def _object_id(urn: str) -> str:
    object_id = decode_urn(urn)
    if object_id is None:
        raise md_error(400, f"Invalid 'urn' parameter: '{urn}' is not a base64-encoded URN.")
    return object_id


def _job(context: EmulatorContext, request: Request, urn: str, caller: Caller,
         *alternatives: tuple[str, ...]) -> JobRecord:
    object_id = _object_id(urn)
    caller.require(*alternatives, object_id=object_id)
    job = context.store.state.jobs.get(job_ref(md_region(request), object_id))
    if job is None:
        raise md_error(404, "The requested manifest was not found (the design has not been translated in "
                            "this region).")
    return job


# -- job ----------------------------------------------------------------------------------------------------
class JobInput(BaseModel):
    model_config = ConfigDict(extra="allow")
    urn: str
    compressedUrn: bool = False
    rootFilename: str | None = None


class JobFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    views: list[str] | None = None
    advanced: dict[str, Any] | None = None


class JobOutput(BaseModel):
    model_config = ConfigDict(extra="allow")
    formats: list[JobFormat] = Field(min_length=1)
    destination: dict[str, Any] | None = None


class JobMisc(BaseModel):
    model_config = ConfigDict(extra="allow")
    workflow: str | None = None
    workflowAttribute: dict[str, Any] | None = None


class JobPayload(BaseModel):
    model_config = ConfigDict(extra="allow")
    input: JobInput
    output: JobOutput
    misc: JobMisc | None = None


def _check_formats(payload: JobPayload, object_key: str) -> None:
    for fmt in payload.output.formats:
        if fmt.type not in OUTPUT_TYPES:
            raise md_error(400, f"Invalid output format type '{fmt.type}'; expected one of "
                                f"{', '.join(OUTPUT_TYPES)}.")
        if any(v not in ("2d", "3d") for v in fmt.views or []):
            raise md_error(400, "Invalid 'views': only '2d' and '3d' are allowed.")
        if fmt.type == "thumbnail":
            for side in ("width", "height"):
                value = (fmt.advanced or {}).get(side)
                if value is not None and value not in THUMBNAIL_SIZES:
                    raise md_error(400, f"Invalid thumbnail {side} {value}; expected 100, 200 or 400.")
        if fmt.type not in GEOMETRY_TYPES and not source_supported(fmt.type, object_key):
            raise md_error(406, f"Translation of '{object_key}' to '{fmt.type}' is not supported.")


def _decide_outcome(context: EmulatorContext, object_key: str, path: Any, size: int) -> tuple[str, list[Any]]:
    tunables = context.tunables
    if any(fnmatch.fnmatch(object_key, pattern) for pattern in tunables.fail_keys):
        return "failed", [EXTRACTOR_FAILURE]
    if any(fnmatch.fnmatch(object_key, pattern) for pattern in tunables.timeout_keys):
        return "timeout", []
    problems = content_problems(path, object_key, size)
    return ("failed", problems) if problems else ("success", [])


def _duration(context: EmulatorContext, object_key: str, size: int) -> float:
    tunables = context.tunables
    extension = object_key.rsplit(".", 1)[-1].lower() if "." in object_key else ""
    base = tunables.translation_seconds_by_extension.get(extension, tunables.translation_seconds)
    return base + tunables.translation_seconds_per_mb * size / (1024 * 1024)


@router.post("/modelderivative/v2/designdata/job", name="job")
async def start_job(request: Request, caller: Annotated[Caller, Depends(authenticated)]) -> JSONResponse:
    context = get_context(request)
    try:
        raw = await request.json()
        payload = JobPayload.model_validate(raw)
    except (ValueError, ValidationError) as exc:
        raise md_error(400, f"Invalid job payload: {exc}") from exc
    object_id = _object_id(payload.input.urn)
    caller.require(("data:read", "data:write", "data:create"))
    region = md_region(request)
    if request.headers.get("region") is None and payload.output.destination:
        region = str(payload.output.destination.get("region", region)).upper()  # deprecated body field
    workflow = payload.misc.workflow if payload.misc else None
    if workflow is not None and not WORKFLOW.match(workflow):
        raise md_error(400, "Invalid 'misc.workflow': up to 36 letters, digits and hyphens.")

    parts = split_object_id(object_id)
    drop_expired_objects(context)
    state = context.store.state
    record = state.objects.get(object_ref(*parts)) if parts else None
    bucket = state.buckets.get(parts[0]) if parts else None
    if record is None or bucket is None:
        raise md_error(400, "Failed to trigger translation for this file.")
    if access_of(bucket, caller.client_id) is None:
        raise md_error(403, "The application has no access to the source object.")
    _check_formats(payload, record.object_key)
    accepted = {"result": "success", "urn": encode_urn(object_id), "acceptedJobs": {"output": raw["output"]}}
    rng = context.real_shape_rng()
    if rng is not None:
        accepted = real_shapes.job_accepted(accepted, rng)

    force = request.headers.get("x-ads-force", "").lower() == "true"
    key = job_ref(region, object_id)
    now = context.clock.now()
    with context.store.lock:
        existing = state.jobs.get(key)
        if existing is not None and not force:
            status, _ = status_of(existing, now)
            requested = {f.type for f in payload.output.formats}
            done = {str(f.get("type")) for f in existing.formats}
            if status == "success" and requested <= done and existing.sha1 == record.sha1:
                return JSONResponse({**accepted, "result": "created"}, status_code=201)
            if status in ("pending", "inprogress"):
                return JSONResponse(accepted)  # already running: no second job
    outcome, messages = _decide_outcome(context, record.object_key, context.store.blob_path(record.blob),
                                        record.size)
    job = JobRecord(
        region=region, urn=encode_urn(object_id), object_id=object_id, bucket_key=record.bucket_key,
        object_key=record.object_key, client_id=caller.client_id, size=record.size, sha1=record.sha1,
        started_at=now, duration=_duration(context, record.object_key, record.size), outcome=outcome,
        messages=messages, formats=[f.model_dump(exclude_none=True) for f in payload.output.formats],
        workflow=workflow, workflow_attribute=payload.misc.workflowAttribute if payload.misc else None,
        generation=(existing.generation + 1) if existing else 1,
    )
    with context.store.lock:
        state.jobs[key] = job
        context.store.mark_dirty()
    return JSONResponse(accepted)


# -- manifest -----------------------------------------------------------------------------------------------
@router.get("/modelderivative/v2/designdata/{urn}/manifest", name="manifest")
async def get_manifest(request: Request, urn: str,
                       caller: Annotated[Caller, Depends(authenticated)]) -> JSONResponse:
    context = get_context(request)
    job = _job(context, request, urn, caller, *MANIFEST_READ)
    body = manifest_body(job, context.clock.now())
    rng = context.real_shape_rng()
    return JSONResponse(body if rng is None else real_shapes.manifest(body, rng))


@router.delete("/modelderivative/v2/designdata/{urn}/manifest", name="manifest_delete")
async def delete_manifest(request: Request, urn: str,
                          caller: Annotated[Caller, Depends(authenticated)]) -> JSONResponse:
    context = get_context(request)
    object_id = _object_id(urn)
    caller.require(("data:read", "data:write"), object_id=object_id)
    with context.store.lock:
        if context.store.state.jobs.pop(job_ref(md_region(request), object_id), None) is not None:
            context.store.mark_dirty()
    return JSONResponse({"result": "success"})


# -- views, tree, properties --------------------------------------------------------------------------------
@router.get("/modelderivative/v2/designdata/{urn}/metadata", name="metadata")
async def list_views(request: Request, urn: str,
                     caller: Annotated[Caller, Depends(authenticated)]) -> JSONResponse:
    context = get_context(request)
    job = _job(context, request, urn, caller, *DATA_READ)
    status, _ = status_of(job, context.clock.now())
    found = views(job) if status == "success" else []
    metadata = [{"name": v.name, "role": v.role, "guid": v.guid, "isMasterView": v.is_master} for v in found]
    return JSONResponse({"data": {"type": "metadata", "metadata": metadata}})


async def _model(context: EmulatorContext, request: Request, urn: str, guid: str,
                 caller: Caller) -> ModelContent:
    """The design's content once extraction is 'done'; raises 404, or 202 for the first calls."""
    job = _job(context, request, urn, caller, *DATA_READ)
    status, _ = status_of(job, context.clock.now())
    if guid not in {v.guid for v in views(job)}:
        raise md_error(404, f"Model view '{guid}' was not found.")
    if status in ("pending", "inprogress"):
        raise APSHTTPError(202, {"result": "success"})
    if status != "success":
        raise md_error(404, f"The design was not translated successfully (status '{status}').")
    with context.store.lock:
        if request.headers.get("x-ads-force", "").lower() == "true":
            job.property_calls[guid] = 0
        calls = job.property_calls.get(guid, 0)
        if calls < context.tunables.properties_202_count:
            job.property_calls[guid] = calls + 1
            context.store.mark_dirty()
            raise APSHTTPError(202, {"result": "success"})
    cache_key = (job.object_id, job.sha1)
    content = context.content_cache.get(cache_key)
    if content is None:
        record = context.store.state.objects.get(object_ref(job.bucket_key, job.object_key))
        path = context.store.blob_path(record.blob) if record else context.store.blob_dir / "missing"
        tunables = context.tunables
        content = await anyio.to_thread.run_sync(
            build_content, path, job.object_key, job.sha1, job.size, tunables.synthetic_object_count,
            tunables.content_parse_max_bytes)
        context.content_cache.put(cache_key, content)
    return content


def _sized_json(context: EmulatorContext, body: dict[str, Any], forceget: bool) -> Response:
    """413 past large_response_bytes unless forceget, and past forceget_ceiling_bytes (APS: 800 MB) even
    then, as APS does."""
    data = json.dumps(body, separators=(",", ":")).encode()
    size_header = {"x-ads-size": str(len(data))}
    tunables = context.tunables
    too_large = len(data) > tunables.large_response_bytes
    if len(data) > tunables.forceget_ceiling_bytes or (too_large and not forceget):
        diagnostic = ("Please use the 'forceget' parameter to force querying the data." if not forceget
                      else "The requested data exceeds the maximum size that can be returned.")
        raise APSHTTPError(413, {"diagnostic": diagnostic}, size_header)
    return Response(data, media_type="application/json", headers=size_header)


def _forceget(value: str | None) -> bool:
    return (value or "").lower() == "true"


@router.get("/modelderivative/v2/designdata/{urn}/metadata/{guid}", name="tree")
async def object_tree(
    request: Request, urn: str, guid: str, caller: Annotated[Caller, Depends(authenticated)],
    forceget: str | None = None, objectid: int | None = None, level: int | None = None,
) -> Response:
    context = get_context(request)
    content = await _model(context, request, urn, guid, caller)
    if objectid is not None and objectid not in content.objects:
        raise md_error(404, f"Object {objectid} was not found.")
    if level is not None and level != 1:
        raise md_error(400, "Only level=1 is supported.")
    objects = content.tree(objectid, level if objectid is not None else None)
    rng = context.real_shape_rng()
    if rng is not None:
        objects = real_shapes.tree(objects, rng)
    return _sized_json(context, {"data": {"type": "objects", "objects": objects}}, _forceget(forceget))


@router.get("/modelderivative/v2/designdata/{urn}/metadata/{guid}/properties", name="properties")
async def properties(
    request: Request, urn: str, guid: str, caller: Annotated[Caller, Depends(authenticated)],
    forceget: str | None = None, objectid: int | None = None,
) -> Response:
    context = get_context(request)
    content = await _model(context, request, urn, guid, caller)
    collection = content.collection([objectid] if objectid is not None else None)
    rng = context.real_shape_rng()
    if rng is not None:
        collection = real_shapes.properties(collection, rng)
    body = {"data": {"type": "properties", "collection": collection}}
    return _sized_json(context, body, _forceget(forceget))


class Pagination(BaseModel):
    offset: int = Field(0, ge=0)
    limit: int = Field(20, ge=1, le=1000)


class PropertiesQuery(BaseModel):
    model_config = ConfigDict(extra="allow")
    query: dict[str, list[Any]] | None = None
    fields: list[str] | None = None
    pagination: Pagination = Field(default_factory=Pagination)


QUERY_OPERATORS = ("$in", "$eq", "$prefix", "$like")


def _check_query(query: dict[str, list[Any]] | None) -> None:
    """400 for an operator the emulator does not implement (rather than silently matching everything)."""
    for operator, operands in (query or {}).items():
        if operator not in QUERY_OPERATORS:
            raise md_error(400, f"Invalid query: unsupported operator '{operator}' (the emulator supports "
                                f"{', '.join(QUERY_OPERATORS)}).")
        if not operands:
            raise md_error(400, f"Invalid query: '{operator}' needs [<attribute>, <value>...].")


def _matches(item: dict[str, Any], query: dict[str, list[Any]] | None) -> bool:
    """All operators must match; $in, $eq, $prefix and $like (% wildcards) on objectid, name, externalId."""
    if not query:
        return True
    for operator, operands in query.items():
        value, wanted = item.get(str(operands[0])), operands[1:]
        text = "" if value is None else str(value)
        if operator == "$in" and value not in wanted:
            return False
        if operator == "$eq" and (not wanted or value != wanted[0]):
            return False
        if operator == "$prefix" and not any(text.startswith(str(w)) for w in wanted):
            return False
        patterns = [str(w).replace("%", "*") for w in wanted]
        if operator == "$like" and not any(fnmatch.fnmatchcase(text, p) for p in patterns):
            return False
    return True


def _select(item: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    if not fields:
        return item
    chosen: dict[str, Any] = {}
    for name in fields:
        if name.startswith("properties."):
            category = name.split(".", 1)[1]
            props = item["properties"]
            picked = props if category == "*" else {k: v for k, v in props.items() if k == category}
            chosen.setdefault("properties", {}).update(picked)
        elif name in item:
            chosen[name] = item[name]
    return chosen


@router.post("/modelderivative/v2/designdata/{urn}/metadata/{guid}/properties:query", name="properties_query")
async def properties_query(request: Request, urn: str, guid: str,
                           caller: Annotated[Caller, Depends(authenticated)]) -> Response:
    context = get_context(request)
    try:
        body = PropertiesQuery.model_validate(await request.json())
    except (ValueError, ValidationError) as exc:
        raise md_error(400, f"Invalid query: {exc}") from exc
    _check_query(body.query)
    content = await _model(context, request, urn, guid, caller)
    matching = [item for item in content.collection() if _matches(item, body.query)]
    page = matching[body.pagination.offset: body.pagination.offset + body.pagination.limit]
    answer = {
        "pagination": {"limit": body.pagination.limit, "offset": body.pagination.offset,
                       "totalResults": len(matching)},
        "data": {"type": "properties", "collection": [_select(item, body.fields) for item in page]},
    }
    # A page is bounded by its limit, so like forceget it is refused only past forceget_ceiling_bytes:
    # this is the way to read properties that are too large even for forceget.
    return _sized_json(context, answer, forceget=True)


# -- thumbnail and formats ----------------------------------------------------------------------------------
@router.get("/modelderivative/v2/designdata/{urn}/thumbnail", name="thumbnail")
async def thumbnail(request: Request, urn: str, caller: Annotated[Caller, Depends(authenticated)],
                    width: int | None = None, height: int | None = None) -> Response:
    context = get_context(request)
    job = _job(context, request, urn, caller, *DATA_READ)
    width = width or height or 200
    height = height or width
    if width not in THUMBNAIL_SIZES or height not in THUMBNAIL_SIZES:
        raise md_error(400, "Thumbnail width and height must be 100, 200 or 400.")
    now = context.clock.now()
    status, _ = status_of(job, now)
    if status != "success" or not any(f.get("type") in (*GEOMETRY_TYPES, "thumbnail") for f in job.formats):
        raise md_error(404, "No thumbnail is available for this design.")
    png = await anyio.to_thread.run_sync(render_png, width, height, job.sha1)
    return Response(png, media_type="image/png", headers={
        "x-ads-name": f"0.svf.png01_thumb_{width}x{height}.png",
        "x-ads-name-encoding": "url-encoded",
        "x-ads-size": f"[{width}, {height}]",
        "x-ads-role": "rendered",
        "x-ads-job-status": "success",
        "Cache-Control": "public, max-age=86400",
    })


@router.get("/modelderivative/v2/designdata/formats", name="formats")
async def formats(request: Request, caller: Annotated[Caller, Depends(authenticated)]) -> Response:
    since = request.headers.get("if-modified-since")
    if since:
        try:
            if parsedate_to_datetime(since).timestamp() >= FORMATS_LAST_MODIFIED:
                return Response(status_code=304)
        except (TypeError, ValueError):
            pass
    return JSONResponse({"formats": supported_formats()},
                        headers={"Last-Modified": formatdate(FORMATS_LAST_MODIFIED, usegmt=True)})

