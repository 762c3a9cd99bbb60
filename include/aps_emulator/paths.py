"""Request paths as APS accepts them: repeated slashes count as one (`//authentication/v2/token`).

Autodesk's official SDKs build URLs as `<base address>` + `/<path>`, and the base address ends in `/`, so
every request they send starts with `//`; APS answers those as usual. The slashes are collapsed in the
still-encoded path, so an object key's own `%2F%2F` stays part of the key.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from starlette.types import ASGIApp, Receive, Scope, Send

REPEATED_SLASHES = re.compile(rb"/{2,}")


class CollapseSlashesMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw: bytes = scope.get("raw_path") or scope["path"].encode()
            if b"//" in raw:
                collapsed = REPEATED_SLASHES.sub(b"/", raw)
                scope = {**scope, "raw_path": collapsed, "path": unquote(collapsed.decode("latin-1"))}
        await self.app(scope, receive, send)
