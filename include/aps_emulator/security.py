"""Access tokens and scope checks.

Scope rule (aps-api.md §4.2 leaves it open): a route lists one or more *alternatives*; the token must hold
ALL scopes of at least one alternative. E.g. signed upload requires ("data:write", "data:create") together,
the manifest accepts ("data:read",) or ("viewables:read",), while metadata, tree, properties and the
thumbnail accept only ("data:read",) (aps-api.md §4.2).
URN-scoped viewer tokens: a `data:read:<urn>` scope counts as `data:read` only for the design/object it names
(base64 URN or raw objectId); for any other URN it does not, so the request gets 403.
Missing/invalid/expired token -> 401, valid token without the scopes -> 403 (both with an AUTH-style body).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from fastapi import Request

from aps_emulator.context import EmulatorContext, get_context
from aps_emulator.errors import auth_error
from aps_emulator.state import TokenRecord
from aps_emulator.urns import normalise_scoped_urn

KNOWN_SCOPES = frozenset({
    "data:read", "data:write", "data:create", "data:search",
    "bucket:create", "bucket:read", "bucket:update", "bucket:delete",
    "viewables:read", "code:all", "account:read", "account:write",
    "user-profile:read", "user:read", "user:write", "openid",
})
URN_SCOPE_PREFIX = "data:read:"


def is_valid_scope(scope: str) -> bool:
    if scope.startswith(URN_SCOPE_PREFIX):
        return normalise_scoped_urn(scope[len(URN_SCOPE_PREFIX):]) is not None
    return scope in KNOWN_SCOPES


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_token(context: EmulatorContext, client_id: str, scopes: list[str]) -> tuple[str, TokenRecord]:
    """A JWT-shaped access token (HS256 with the emulator's key; APS uses RS256) and its stored record."""
    now = context.clock.now()
    expires_at = now + context.tunables.token_lifetime_seconds
    header = {"alg": "HS256", "typ": "JWT", "kid": "aps-emulator"}
    claims = {
        "scope": scopes,
        "client_id": client_id,
        "iss": "https://developer.api.autodesk.com",
        "aud": "https://autodesk.com",
        "jti": secrets.token_urlsafe(16),
        "iat": int(now),
        "exp": int(expires_at),
    }
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    key = context.store.state.signing_key.encode()
    signature = _b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())
    record = TokenRecord(client_id=client_id, scopes=scopes, expires_at=expires_at)
    with context.store.lock:
        tokens = context.store.state.tokens
        # Keep the table small: forget tokens that expired more than a day ago.
        for stale in [t for t, r in tokens.items() if r.expires_at < now - 86400]:
            del tokens[stale]
        tokens[f"{signing_input}.{signature}"] = record
        context.store.mark_dirty()
    return f"{signing_input}.{signature}", record


@dataclass(frozen=True)
class Caller:
    """The application behind a valid bearer token."""

    client_id: str
    scopes: frozenset[str]

    def _has(self, scope: str, object_id: str | None) -> bool:
        if scope in self.scopes:
            return True
        if scope == "data:read" and object_id is not None:
            granted = [s[len(URN_SCOPE_PREFIX):] for s in self.scopes if s.startswith(URN_SCOPE_PREFIX)]
            return any(normalise_scoped_urn(urn) == object_id for urn in granted)
        return False

    def require(self, *alternatives: tuple[str, ...], object_id: str | None = None) -> None:
        """403 unless every scope of at least one alternative is held (see module doc)."""
        if not alternatives:
            return
        if any(all(self._has(scope, object_id) for scope in option) for option in alternatives):
            return
        wanted = " or ".join("+".join(option) for option in alternatives)
        raise auth_error(403, "AUTH-010", f"The access token does not have the required scope(s): {wanted}")


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def client_id_of(context: EmulatorContext, authorization: str) -> str | None:
    """The application behind an Authorization header: a known bearer token (expired or not) or Basic
    credentials (the token request). Rate limiting counts per application, so expiry does not matter."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer":
        record = context.store.state.tokens.get(value.strip())
        return record.client_id if record else None
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip()).decode().partition(":")[0] or None
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
    return None


def authenticated(request: Request) -> Caller:
    """FastAPI dependency: the caller, or 401 with an AUTH-style body."""
    context = get_context(request)
    token = bearer_token(request)
    if token is None:
        raise auth_error(401, "AUTH-001", "The Authorization header is missing or is not a Bearer token.")
    record = context.store.state.tokens.get(token)
    if record is None or record.expires_at <= context.clock.now():
        raise auth_error(401, "AUTH-006", "Access token provided is invalid or expired.")
    return Caller(client_id=record.client_id, scopes=frozenset(record.scopes))
