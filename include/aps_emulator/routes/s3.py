"""The emulator's stand-in for S3's pre-signed part upload (aps-api.md §2.5).

PUT /_s3/upload/{uploadKey}/{part}?expires=<epoch>&sig=<hmac>: no Authorization header, raw bytes in the
body, answers 200 with `ETag: "<md5 hex>"`. The body is streamed to a file (never held in memory) so a
1 GiB upload costs a few kilobytes of RAM. Expired or tampered URLs get S3's 403 XML.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from fastapi import APIRouter, Request
from fastapi.responses import Response

from aps_emulator.context import get_context
from aps_emulator.routes.oss import url_signature
from aps_emulator.state import PartRecord

router = APIRouter()


def s3_error(status_code: int, code: str, message: str, **fields: str) -> Response:
    extra = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in fields.items())
    xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{escape(message)}'
           f"</Message>{extra}<RequestId>{secrets.token_hex(8).upper()}</RequestId></Error>")
    return Response(xml, status_code=status_code, media_type="application/xml")


async def _discard_body(request: Request) -> None:
    """Read the body to its end so the client sees our answer instead of a reset connection."""
    async for _ in request.stream():
        pass


def _http_date(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@router.put("/_s3/upload/{upload_key}/{part}", name="upload_part")
async def upload_part(request: Request, upload_key: str, part: int) -> Response:
    context = get_context(request)
    store = context.store
    try:
        expires = int(request.query_params.get("expires", ""))
    except ValueError:
        expires = -1
    sig = request.query_params.get("sig", "")
    if expires < 0 or not hmac.compare_digest(sig, url_signature(context, upload_key, part, expires)):
        await _discard_body(request)
        return s3_error(403, "SignatureDoesNotMatch",
                        "The request signature we calculated does not match the signature you provided.")
    now = context.clock.now()
    if now > expires:
        await _discard_body(request)
        return s3_error(403, "AccessDenied", "Request has expired", Expires=_http_date(expires),
                        ServerTime=_http_date(now))
    if upload_key not in store.state.uploads:
        await _discard_body(request)
        return s3_error(404, "NoSuchUpload", "The specified upload does not exist. The upload ID may be "
                        "invalid, or the upload may have been aborted or completed.")

    final_path = store.part_path(upload_key, part)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    temp_path = final_path.with_name(f"{final_path.name}.{secrets.token_hex(4)}.tmp")
    md5, size = hashlib.md5(), 0
    try:
        with temp_path.open("wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
                md5.update(chunk)
                size += len(chunk)
        os.replace(temp_path, final_path)
    finally:
        temp_path.unlink(missing_ok=True)
    etag = md5.hexdigest()
    with store.lock:
        upload = store.state.uploads.get(upload_key)
        if upload is None:  # completed or reset while we were receiving
            final_path.unlink(missing_ok=True)
            return s3_error(404, "NoSuchUpload", "The specified upload does not exist.")
        upload.parts[part] = PartRecord(size=size, etag=etag)
        store.mark_dirty()
    context.stats.count_part(upload.object_key, part)
    return Response(status_code=200, headers={"ETag": f'"{etag}"'})
