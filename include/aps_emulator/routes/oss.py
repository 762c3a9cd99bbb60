"""OSS: buckets, direct-to-S3 signed upload (URLs + completion) and object details (aps-api.md §2.2-2.7).

Region rule for OSS reads: when the request names a region (x-ads-region / region header or query) and the
bucket lives in another one, the answer is 404; when it names none, the bucket's own region is used
(bucket keys are global, and real OSS reads do not require a region).
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import re
import secrets
import uuid
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from aps_emulator import real_shapes
from aps_emulator.bodies import bucket_body, iso, object_body
from aps_emulator.context import EmulatorContext, get_context
from aps_emulator.errors import oss_error
from aps_emulator.regions import DEFAULT_REGION, oss_region
from aps_emulator.retention import drop_expired_objects
from aps_emulator.security import Caller, authenticated
from aps_emulator.state import BucketRecord, ObjectRecord, UploadRecord, object_ref

router = APIRouter()

BUCKET_KEY = re.compile(r"^[-_.a-z0-9]{3,128}$")
POLICIES = ("transient", "temporary", "persistent")
UPLOAD_LIFETIME_SECONDS = 24 * 3600
MAX_PART_NUMBER = 10000


def access_of(bucket: BucketRecord, client_id: str) -> str | None:
    for permission in bucket.permissions:
        if permission.get("authId") == client_id:
            return permission.get("access")
    return None


def find_bucket(context: EmulatorContext, request: Request, caller: Caller, bucket_key: str,
                write: bool) -> BucketRecord:
    """The bucket, or 404 (absent / other region) or 403 (the caller has no access)."""
    bucket = context.store.state.buckets.get(bucket_key)
    region = oss_region(request)
    if bucket is None or (region is not None and region != bucket.region):
        raise oss_error(404, f"Bucket '{bucket_key}' does not exist")
    access = access_of(bucket, caller.client_id)
    if access is None or (write and access not in ("full", "write")):
        raise oss_error(403, "No write access" if write and access else "No read access")
    return bucket


# -- buckets ------------------------------------------------------------------------------------------------
class Permission(BaseModel):
    authId: str
    access: str


class CreateBucket(BaseModel):
    model_config = ConfigDict(extra="allow")
    bucketKey: str
    policyKey: str
    allow: list[Permission] = Field(default_factory=list)


@router.post("/oss/v2/buckets", name="bucket_create")
async def create_bucket(request: Request, body: CreateBucket,
                        caller: Annotated[Caller, Depends(authenticated)]) -> JSONResponse:
    caller.require(("bucket:create",))
    context = get_context(request)
    region = oss_region(request) or DEFAULT_REGION
    if not BUCKET_KEY.match(body.bucketKey):
        raise oss_error(400, "Valid field 'bucketKey' must be of the form [-_.a-z0-9]{3,128}")
    if body.policyKey not in POLICIES:
        raise oss_error(400, f"Valid field 'policyKey' must be one of {', '.join(POLICIES)}")
    permissions = [{"authId": caller.client_id, "access": "full"}]
    permissions += [{"authId": p.authId, "access": p.access}
                    for p in body.allow if p.authId != caller.client_id]
    with context.store.lock:
        if body.bucketKey in context.store.state.buckets:
            raise oss_error(409, "Bucket already exists")
        bucket = BucketRecord(bucket_key=body.bucketKey, owner=caller.client_id, region=region,
                              policy_key=body.policyKey, created_ms=context.clock.now_ms(),
                              permissions=permissions)
        context.store.state.buckets[bucket.bucket_key] = bucket
        context.store.mark_dirty()
    return JSONResponse(bucket_body(bucket))


@router.get("/oss/v2/buckets/{bucket_key}/details", name="bucket_details")
async def bucket_details(request: Request, bucket_key: str,
                         caller: Annotated[Caller, Depends(authenticated)]) -> JSONResponse:
    caller.require(("bucket:read",))
    context = get_context(request)
    bucket = context.store.state.buckets.get(bucket_key)
    region = oss_region(request)
    if bucket is None or (region is not None and region != bucket.region):
        raise oss_error(404, f"Bucket '{bucket_key}' does not exist")
    if bucket.owner != caller.client_id:  # only the owning application may read details
        raise oss_error(403, "No read access")
    return JSONResponse(bucket_body(bucket))


# -- signed upload -----------------------------------------------------------------------------------------
def url_signature(context: EmulatorContext, upload_key: str, part: int, expires: int) -> str:
    key = context.store.state.signing_key.encode()
    return hmac.new(key, f"{upload_key}:{part}:{expires}".encode(), hashlib.sha256).hexdigest()[:40]


@router.get("/oss/v2/buckets/{bucket_key}/objects/{object_key:path}/signeds3upload", name="upload_urls")
async def upload_urls(
    request: Request,
    bucket_key: str,
    object_key: str,
    caller: Annotated[Caller, Depends(authenticated)],
    parts: int = 1,
    first_part: Annotated[int, Query(alias="firstPart")] = 1,
    upload_key: Annotated[str | None, Query(alias="uploadKey")] = None,
    minutes_expiration: Annotated[int, Query(alias="minutesExpiration")] = 2,
) -> JSONResponse:
    caller.require(("data:write", "data:create"))
    context = get_context(request)
    find_bucket(context, request, caller, bucket_key, write=True)
    limit = context.tunables.max_urls_per_request
    if not 1 <= parts <= limit:
        raise oss_error(400, f"'parts' must be between 1 and {limit}")
    if first_part < 1 or first_part + parts - 1 > MAX_PART_NUMBER:
        raise oss_error(400, f"Part numbers must be between 1 and {MAX_PART_NUMBER}")
    if not 1 <= minutes_expiration <= 60:
        raise oss_error(400, "'minutesExpiration' must be between 1 and 60")
    now = context.clock.now()
    with context.store.lock:
        uploads = context.store.state.uploads
        if upload_key is None:
            upload = UploadRecord(upload_key=secrets.token_urlsafe(48), bucket_key=bucket_key,
                                  object_key=object_key, started_at=now,
                                  expires_at=now + UPLOAD_LIFETIME_SECONDS)
            uploads[upload.upload_key] = upload
            context.store.mark_dirty()
        else:
            found = uploads.get(upload_key)
            if found is None or found.expires_at <= now:
                raise oss_error(400, "The uploadKey is invalid or the upload has expired")
            if (found.bucket_key, found.object_key) != (bucket_key, object_key):
                raise oss_error(400, "The uploadKey belongs to another object")
            upload = found
    lifetime = context.tunables.url_lifetime_seconds or minutes_expiration * 60
    expires = int(now + lifetime)
    base = str(request.base_url).rstrip("/")
    urls = []
    for part in range(first_part, first_part + parts):
        sig = url_signature(context, upload.upload_key, part, expires)
        urls.append(f"{base}/_s3/upload/{upload.upload_key}/{part}?expires={expires}&sig={sig}")
    return JSONResponse({"uploadKey": upload.upload_key, "urls": urls, "urlExpiration": iso(expires),
                         "uploadExpiration": iso(upload.expires_at)})


class CompleteUpload(BaseModel):
    model_config = ConfigDict(extra="allow")
    uploadKey: str
    size: int | None = None
    eTags: list[str] | None = None


def _validation_report(upload: UploadRecord, body: CompleteUpload, min_part: int) -> dict[str, Any] | None:
    """D-COMPLETE's MissingOrInvalidParts answer, or None when parts, eTags and size all agree."""
    expected_etags = [tag.strip('"') for tag in body.eTags or []]
    count = max([len(expected_etags), *upload.parts.keys()], default=0)
    detected = sum(p.size for p in upload.parts.values())
    report, ok = [], True
    for number in range(1, count + 1):
        part = upload.parts.get(number)
        entry: dict[str, Any] = {"part": number, "size": part.size if part else 0,
                                 "eTag": part.etag if part else None}
        if part is None:
            status = "Pending"
        else:
            unexpected = number <= len(expected_etags) and expected_etags[number - 1] != part.etag
            too_small = number < count and part.size < min_part
            status = "Unexpected+TooSmall" if unexpected and too_small else (
                "Unexpected" if unexpected else "TooSmall" if too_small else "Ok")
        entry["status"] = status
        ok = ok and status == "Ok"
        report.append(entry)
    if body.size is not None and body.size != detected:
        ok = False
    if ok:
        return None
    return {"uploadKey": upload.upload_key, "status": "error", "reason": "MissingOrInvalidParts",
            "size": {"expected": body.size, "detected": detected}, "parts": report}


def _plain_problems(upload: UploadRecord, min_part: int) -> str | None:
    """Why parts cannot be assembled when the caller sent no size/eTags (then APS-style 400)."""
    if not upload.parts:
        return "No parts have been uploaded for this uploadKey"
    count = max(upload.parts)
    missing = [n for n in range(1, count + 1) if n not in upload.parts]
    if missing:
        return f"Missing part(s): {', '.join(map(str, missing[:20]))}"
    small = [n for n in range(1, count) if upload.parts[n].size < min_part]
    if small:
        return (f"Part(s) {', '.join(map(str, small[:20]))} are smaller than the minimum part size of "
                f"{min_part} bytes (only the last part may be smaller)")
    return None


def _assemble(part_files: list[Path], destination: Path) -> tuple[int, str]:
    """Concatenate part files into `destination`; returns (size, sha1). Reads 1 MiB at a time."""
    sha1, size = hashlib.sha1(), 0
    with destination.open("wb") as out:
        for path in part_files:
            with path.open("rb") as part:
                while chunk := part.read(1 << 20):
                    out.write(chunk)
                    sha1.update(chunk)
                    size += len(chunk)
    return size, sha1.hexdigest()


@router.post("/oss/v2/buckets/{bucket_key}/objects/{object_key:path}/signeds3upload", name="upload_complete")
async def complete_upload(request: Request, bucket_key: str, object_key: str, body: CompleteUpload,
                          caller: Annotated[Caller, Depends(authenticated)]) -> JSONResponse:
    caller.require(("data:write", "data:create"))
    context = get_context(request)
    find_bucket(context, request, caller, bucket_key, write=True)
    store, min_part = context.store, context.tunables.min_part_bytes
    drop_expired_objects(context)
    with store.lock:
        state = store.state
        finished_ref = state.completed_uploads.get(body.uploadKey)
        if finished_ref is not None and finished_ref == object_ref(bucket_key, object_key) \
                and finished_ref in state.objects:
            # A retried completion (e.g. after a lost answer) gets the same result again.
            return JSONResponse(object_body(str(request.base_url), state.objects[finished_ref]))
        upload = state.uploads.get(body.uploadKey)
        if upload is None or upload.expires_at <= context.clock.now():
            raise oss_error(400, "The uploadKey is invalid or the upload has expired")
        if (upload.bucket_key, upload.object_key) != (bucket_key, object_key):
            raise oss_error(400, "The uploadKey belongs to another object")
        if body.size is not None or body.eTags is not None:
            report = _validation_report(upload, body, min_part)
            if report is not None:
                return JSONResponse(report)  # D-COMPLETE: a failed validation is still HTTP 200
        problem = _plain_problems(upload, min_part)
        if problem is not None:
            raise oss_error(400, problem)
        # Take the upload out of the table so a concurrent completion cannot assemble it twice.
        del state.uploads[upload.upload_key]
        store.mark_dirty()
    part_files = [store.part_path(upload.upload_key, n) for n in sorted(upload.parts)]
    blob = uuid.uuid4().hex
    size, sha1 = await anyio.to_thread.run_sync(_assemble, part_files, store.blob_path(blob))
    store.drop_upload_files(upload.upload_key)
    now_ms = context.clock.now_ms()
    content_type = request.headers.get("x-ads-meta-content-type") or "application/octet-stream"
    ref = object_ref(bucket_key, object_key)
    with store.lock:
        previous = store.state.objects.get(ref)
        record = ObjectRecord(bucket_key=bucket_key, object_key=object_key, size=size, sha1=sha1,
                              content_type=content_type, blob=blob,
                              created_ms=previous.created_ms if previous else now_ms, modified_ms=now_ms)
        store.state.objects[ref] = record
        store.state.completed_uploads[upload.upload_key] = ref
        store.mark_dirty()
    if previous is not None:
        store.blob_path(previous.blob).unlink(missing_ok=True)
    answer = object_body(str(request.base_url), record)
    rng = context.real_shape_rng()
    return JSONResponse(answer if rng is None else real_shapes.upload_completion(answer, rng))


# -- object details ----------------------------------------------------------------------------------------
@router.get("/oss/v2/buckets/{bucket_key}/objects/{object_key:path}/details", name="object_details")
async def object_details(
    request: Request,
    bucket_key: str,
    object_key: str,
    caller: Annotated[Caller, Depends(authenticated)],
    with_: Annotated[list[str] | None, Query(alias="with")] = None,
) -> Response:
    context = get_context(request)
    drop_expired_objects(context)
    record = context.store.state.objects.get(object_ref(bucket_key, object_key))
    object_id = f"urn:adsk.objects:os.object:{bucket_key}/{object_key}"
    caller.require(("data:read",), object_id=object_id)
    bucket = context.store.state.buckets.get(bucket_key)
    region = oss_region(request)
    if bucket is None or (region is not None and region != bucket.region):
        raise oss_error(404, f"Bucket '{bucket_key}' does not exist")
    if access_of(bucket, caller.client_id) is None:
        raise oss_error(403, "No read access")
    if record is None:
        raise oss_error(404, f"Object '{object_key}' does not exist in bucket '{bucket_key}'")
    since = request.headers.get("if-modified-since")
    if since:
        try:
            since_dt = email.utils.parsedate_to_datetime(since)
        except (TypeError, ValueError):
            since_dt = None
        if since_dt is not None and record.modified_ms // 1000 <= int(since_dt.timestamp()):
            return Response(status_code=304)
    body = object_body(str(request.base_url), record)
    extra = {"createdDate": record.created_ms, "lastModifiedDate": record.modified_ms,
             "lastAccessedDate": context.clock.now_ms(), "userDefinedMetadata": None}
    for name in with_ or []:
        if name in extra and extra[name] is not None:
            body[name] = extra[name]
    return JSONResponse(body)


# -- object delete -----------------------------------------------------------------------------------------
@router.delete("/oss/v2/buckets/{bucket_key}/objects/{object_key:path}", name="object_delete")
async def delete_object(request: Request, bucket_key: str, object_key: str,
                        caller: Annotated[Caller, Depends(authenticated)]) -> Response:
    """Delete an object and its bytes (200, empty); 404 when the bucket or the object is absent."""
    context = get_context(request)
    drop_expired_objects(context)
    caller.require(("data:write",), object_id=f"urn:adsk.objects:os.object:{bucket_key}/{object_key}")
    with context.store.lock:
        find_bucket(context, request, caller, bucket_key, write=True)
        record = context.store.state.objects.pop(object_ref(bucket_key, object_key), None)
        if record is None:
            raise oss_error(404, f"Object '{object_key}' does not exist in bucket '{bucket_key}'")
        context.store.mark_dirty()
    context.store.blob_path(record.blob).unlink(missing_ok=True)
    return Response(status_code=200)
