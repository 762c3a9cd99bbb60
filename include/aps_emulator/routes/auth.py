"""POST /authentication/v2/token: the 2-legged client-credentials grant (aps-api.md §2.1, §4.1)."""

from __future__ import annotations

import base64
import binascii
import hmac

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from aps_emulator.context import get_context
from aps_emulator.errors import auth_error
from aps_emulator.security import is_valid_scope, mint_token

router = APIRouter()

MAX_SCOPES = 50
MAX_SCOPE_CHARS = 3000


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, sep, secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return (client_id, secret) if sep else None


@router.post("/authentication/v2/token", name="token")
async def token(request: Request) -> JSONResponse:
    context = get_context(request)
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("application/x-www-form-urlencoded"):
        raise auth_error(400, "AUTH-008", "Content-Type must be application/x-www-form-urlencoded.")
    form = await request.form()
    header = request.headers.get("authorization")
    body_id, body_secret = form.get("client_id"), form.get("client_secret")
    if header and (body_id is not None or body_secret is not None):
        raise auth_error(400, "AUTH-008",
                         "Client credentials must be sent either in the Authorization header or in the body, "
                         "not both.")
    if form.get("grant_type") != "client_credentials":
        raise auth_error(400, "AUTH-008", "The required parameter grant_type must be 'client_credentials'.")
    scope_text = str(form.get("scope") or "").strip()
    if not scope_text:
        raise auth_error(400, "AUTH-008", "The required parameter(s) scope not present in the request.")

    if header:
        credentials = _basic_credentials(header)
        if credentials is None:
            raise auth_error(401, "AUTH-003", "The Authorization header is not valid Basic credentials.")
        client_id, secret = credentials
    elif isinstance(body_id, str) and isinstance(body_secret, str):
        client_id, secret = body_id, body_secret
    else:
        raise auth_error(401, "AUTH-003", "No client credentials found in the request.")
    known = context.settings.client_secrets().get(client_id)
    if known is None or not hmac.compare_digest(known.encode(), secret.encode()):
        raise auth_error(401, "AUTH-003", "The client_id/client_secret are not valid.")

    scopes = scope_text.split()
    if len(scope_text) > MAX_SCOPE_CHARS or len(scopes) > MAX_SCOPES:
        raise auth_error(400, "AUTH-008", f"At most {MAX_SCOPES} scopes and {MAX_SCOPE_CHARS} characters.")
    invalid = [s for s in scopes if not is_valid_scope(s)]
    if invalid:
        raise auth_error(400, "AUTH-008", f"Invalid scope(s): {' '.join(invalid)}")

    access_token, record = mint_token(context, client_id, list(dict.fromkeys(scopes)))
    expires_in = context.tunables.token_lifetime_seconds
    return JSONResponse({"access_token": access_token, "token_type": "Bearer", "expires_in": expires_in,
                         "expires_at": int(record.expires_at)})
