"""APSHook: the one place Airflow code gets an APS client from an `aps` connection.

The hook only translates an Airflow connection into an `APSConfig` and hands out the project's APS
clients (`aps_client`), which own retries, rate limiting and the process-wide token cache. Operators and
sensors use the sync client; triggers use the async one.

Connection fields (type `aps`):
    login     -> client id
    password  -> client secret (never logged: the hook's repr and messages show the client id only)
    extra     -> {"region": "US", "base_url": "https://developer.api.autodesk.com",
                  "scopes": "data:read data:write ...", and optionally any other `APSConfig` field such as
                  "timeout", "max_attempts", "upload_part_size", "upload_parallelism"}

Token cache shared by task processes: Airflow runs every task instance in its own process, so by default the
hook sets `APSConfig.token_cache_dir` to a per-user directory on the worker
(`$APS_TOKEN_CACHE_DIR` if set, else `<tempdir>/aps-token-cache-<uid>`, created 0700, files 0600, keyed by a
hash of the credentials). All tasks on a worker then share one token per client and scope set instead of
fetching one each. Set `"token_cache_dir": "/some/dir"` in extra to choose the directory, or
`"token_cache_dir": null` (or false) to keep tokens per process.
"""

from __future__ import annotations

import json
import os
import tempfile
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from pydantic import SecretStr, ValidationError

from aps_client import APSClient, APSConfig, AsyncAPSClient

if TYPE_CHECKING:
    from airflow.sdk import Connection

CONN_TYPE = "aps"
# Extra keys the form manages; everything else in extra that names an APSConfig field is passed through.
_FORM_EXTRAS = ("region", "base_url", "scopes")
_PASS_THROUGH = frozenset(APSConfig.model_fields) - {
    "client_id", "client_secret", "token_cache_dir", *_FORM_EXTRAS
}
TOKEN_CACHE_DIR_ENV = "APS_TOKEN_CACHE_DIR"


def default_token_cache_dir() -> Path:
    """Per user and local to the worker: tokens must not be shared across users or network file systems."""
    configured = os.environ.get(TOKEN_CACHE_DIR_ENV)
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"aps-token-cache-{os.getuid()}"


def _token_cache_dir(extra: dict[str, Any]) -> Any:
    if "token_cache_dir" not in extra:
        return default_token_cache_dir()
    # null / false / "" switch the shared cache off; anything else is validated by APSConfig.
    return extra["token_cache_dir"] or None


def _extra_value(extra: dict[str, Any], name: str) -> Any:
    # Older UIs stored custom fields as `extra__<conn_type>__<name>`; accept both spellings.
    value = extra.get(name)
    if value in (None, ""):
        value = extra.get(f"extra__{CONN_TYPE}__{name}")
    return None if value == "" else value


def config_from_connection(conn: Connection, region: str | None = None) -> APSConfig:
    """Build an `APSConfig` from an Airflow connection of type `aps`.

    `region` (the task's) wins over the connection's default region. Raises ValueError naming the
    connection (never its secret) when the connection is incomplete.
    """
    if not conn.login or not conn.password:
        raise ValueError(f"APS connection {conn.conn_id!r} needs the client id (login) and client secret "
                         "(password)")
    extra = _extra_dejson(conn)
    values: dict[str, Any] = {"client_id": conn.login, "client_secret": SecretStr(conn.password)}
    # The base URL may be given in extra (the form field) or, for URI-style connections, as the host.
    base_url = _extra_value(extra, "base_url") or (conn.host if conn.host and "://" in conn.host else None)
    if base_url:
        values["base_url"] = base_url
    if region or _extra_value(extra, "region"):
        values["region"] = region or _extra_value(extra, "region")
    scopes = _extra_value(extra, "scopes")
    if scopes:
        values["scopes"] = tuple(scopes.replace(",", " ").split() if isinstance(scopes, str) else scopes)
    values.update({key: value for key, value in extra.items() if key in _PASS_THROUGH})
    values["token_cache_dir"] = _token_cache_dir(extra)
    try:
        return APSConfig(**values)
    except ValidationError as exc:
        # pydantic's message lists field names and the bad values; the secret is a SecretStr, so it stays out.
        raise ValueError(f"APS connection {conn.conn_id!r} is invalid: {exc}") from None


def _extra_dejson(conn: Connection) -> dict[str, Any]:
    # Parse without Connection.extra_dejson: that masks secrets through the task supervisor, which blocks
    # (and is not needed: the extra of an `aps` connection holds no secret).
    if not conn.extra:
        return {}
    try:
        extra = json.loads(conn.extra)
    except json.JSONDecodeError as exc:
        raise ValueError(f"APS connection {conn.conn_id!r}: extra is not valid JSON ({exc.msg})") from None
    return extra if isinstance(extra, dict) else {}


class APSHook(BaseHook):
    """Interact with Autodesk Platform Services through an `aps` connection.

    :param aps_conn_id: The Airflow connection holding the APS client id and secret.
    :param region: APS region for this hook's calls; defaults to the connection's region (else US).
    """

    conn_name_attr = "aps_conn_id"
    default_conn_name = "aps_default"
    conn_type = CONN_TYPE
    hook_name = "Autodesk Platform Services"

    def __init__(self, aps_conn_id: str = default_conn_name, region: str | None = None) -> None:
        super().__init__()
        self.aps_conn_id = aps_conn_id
        self.region = region

    def __repr__(self) -> str:
        return f"APSHook(aps_conn_id={self.aps_conn_id!r}, region={self.region!r})"

    # -- configuration -------------------------------------------------------------------------------

    @cached_property
    def config(self) -> APSConfig:
        """The client configuration from the connection (looked up once per hook, synchronously)."""
        return config_from_connection(self.get_connection(self.aps_conn_id), self.region)

    async def aget_config(self) -> APSConfig:
        """The client configuration, looked up without blocking the event loop (for triggers)."""
        if "config" in self.__dict__:
            return self.__dict__["config"]
        conn = await _get_async_connection(self.aps_conn_id)
        config = config_from_connection(conn, self.region)
        self.__dict__["config"] = config
        return config

    # -- clients ---------------------------------------------------------------------------------------

    def get_client(self) -> APSClient:
        """A new sync client; use it as a context manager (`with hook.get_client() as aps:`)."""
        return APSClient(self.config)

    def get_conn(self) -> APSClient:
        """Airflow's generic name for `get_client()`."""
        return self.get_client()

    async def get_async_client(self) -> AsyncAPSClient:
        """A new async client; use it as `async with await hook.get_async_client() as aps:`."""
        return AsyncAPSClient(await self.aget_config())

    # -- the Test button -------------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """Fetch a 2-legged token with the connection's credentials and scopes."""
        try:
            config = self.config
            with APSClient(config) as aps:
                token = aps.get_token()
        except Exception as exc:  # the UI shows the message; APS errors carry no secret
            return False, f"{type(exc).__name__}: {exc}"
        return True, (f"Token for client {config.client_id} from {config.base_url} "
                      f"(scopes: {' '.join(token.scopes) or 'default'}, expires in {token.expires_in}s)")


async def _get_async_connection(conn_id: str) -> Connection:
    """Look the connection up from a trigger without blocking the triggerer's event loop.

    Airflow 3.3.2 made `BaseHook.aget_connection` safe on the event loop; the common-compat helper picks
    it (or runs the sync lookup in a thread on older versions), as the Amazon provider does.
    """
    from airflow.providers.common.compat.connection import get_async_connection

    return await get_async_connection(conn_id, APSHook)
