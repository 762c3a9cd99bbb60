"""The APS Viewer: the version a page loads, the scope a viewer token carries, and the one way to mint one.

Two places hand out viewer tokens, and both mint them with `mint_viewer_token` on a client built with
`viewer_client_config`: the results API (`aps_api`, behind its per-scope token cache) and the run page
inside the Airflow UI (`aps_run_page`). Never the pipeline's own token (design.md §4): a token carries one
model's `data:read:<urn>` or the app-wide `viewables:read`. The Viewer's endpoint per region is
`aps_client.regions.viewer_api`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aps_client.client import AsyncAPSClient
    from aps_client.config import APSConfig

#: The APS Viewer a page loads: an exact version, so new Autodesk code never runs unreviewed.
VIEWER_BASE_URL = "https://developer.api.autodesk.com/modelderivative/v2/viewers/7.109.0/"
VIEWER_JS_URL = VIEWER_BASE_URL + "viewer3D.min.js"
VIEWER_CSS_URL = VIEWER_BASE_URL + "style.min.css"

VIEWABLES_SCOPE = "viewables:read"


class TokenMode(StrEnum):
    """Which scope the viewer tokens carry."""

    PER_MODEL = "per-model"  # `data:read:<urn>`: a token opens only the one model it was issued for
    VIEWABLES = "viewables"  # `viewables:read`: one token opens every model's viewables of the app


def viewer_scope(mode: TokenMode, urn: str) -> str:
    """The scope a viewer token for model `urn` carries in `mode`."""
    return VIEWABLES_SCOPE if mode == TokenMode.VIEWABLES else f"data:read:{urn}"


def viewer_client_config(config: APSConfig, *, token_refresh_margin: float | None = None) -> APSConfig:
    """`config` (its credentials and base URL) for a client that only mints viewer tokens.

    Its default scope is `viewables:read`, never the pipeline's, and it fails fast: a viewer waits for its
    token, so no retrying for minutes. `token_refresh_margin`: a caller with its own token cache sets the
    client's margin to its own, so the client never hands back a token that cache would call stale.
    """
    update: dict[str, object] = {"scopes": (VIEWABLES_SCOPE,), "timeout": 5.0, "max_attempts": 2,
                                 "max_retry_seconds": 5.0}
    if token_refresh_margin is not None:
        update["token_refresh_margin"] = token_refresh_margin
    return config.model_copy(update=update)


@dataclass(frozen=True)
class ViewerToken:
    """A viewer token as the pages hand it out. The token text stays out of repr()."""

    access_token: str = field(repr=False)
    token_type: str
    expires_at: float  # epoch seconds
    scope: str

    def expires_in(self, now: float) -> int:
        return max(0, int(self.expires_at - now))


async def mint_viewer_token(aps: AsyncAPSClient, scope: str) -> ViewerToken:
    """Ask APS for a 2-legged token with `scope` only (see `viewer_scope`), through `aps`'s token cache."""
    token = await aps.get_token([scope])
    expires_at = token.expires_at or time.time() + token.expires_in
    return ViewerToken(token.access_token, token.token_type or "Bearer", expires_at, scope)
