"""Settings for the API server, read from `APS_API_*` environment variables (pydantic-settings)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from aps_client.viewer import VIEWER_CSS_URL, VIEWER_JS_URL, TokenMode

ENV_PREFIX = "APS_API_"


class APISettings(BaseSettings):
    """Everything the server needs. The secrets are SecretStr so they never show up in reprs or logs."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=None, extra="ignore")

    # The results database, connected as the read-only role (e.g. `aps_reader`). The server never writes.
    database_url: SecretStr = Field(description="SQLAlchemy URL of the results database (read-only role)")
    db_pool_size: int = Field(default=10, ge=1, le=200)
    # Server processes `aps-api` starts (read by its CLI, aps_api.cli.default_workers): None, or empty in
    # the environment, is one per CPU the process may use.
    workers: int | None = Field(default=None, ge=1, le=256)

    # APS credentials, used ONLY to mint viewer tokens (never the pipeline's own token).
    aps_base_url: str = "https://developer.api.autodesk.com"  # the emulator: http://127.0.0.1:PORT
    aps_client_id: str = ""
    aps_client_secret: SecretStr = SecretStr("")
    # Per model by default: a token in a browser (where the Viewer's own script runs too) opens one model,
    # not every model of the APS app.
    token_mode: TokenMode = TokenMode.PER_MODEL
    # A cached viewer token is handed out only while it still has more than this many seconds to live.
    token_refresh_margin_seconds: float = Field(default=300.0, ge=0)
    # Per-model mode caches one token per model: bound the cache.
    token_cache_max_entries: int = Field(default=10_000, ge=1)

    # Comma-separated in the environment: APS_API_CORS_ORIGINS="https://a.example,https://b.example"
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Requests per API key per minute, counted per server process (see aps_api.ratelimit).
    rate_limit_per_minute: int = Field(default=1200, ge=1)
    # Per-key exceptions to that limit, by key name (`aps-api keys create NAME`), e.g. a load test's or a
    # fuzzer's key: APS_API_RATE_LIMIT_PER_KEY='{"schemathesis": 100000}'.
    rate_limit_per_key: dict[str, int] = Field(default_factory=dict)
    # Invalid API keys per client address per minute; beyond it the address's unknown keys get 429 without
    # a database lookup (see aps_api.key_verifier). The address is the one uvicorn reports: behind a
    # reverse proxy, list the proxy in uvicorn's FORWARDED_ALLOW_IPS so X-Forwarded-For is used.
    invalid_key_limit_per_minute: int = Field(default=30, ge=1)
    # How long a verified API key is trusted before the database is asked again; revocation takes at most
    # this long to be honoured.
    api_key_cache_seconds: float = Field(default=30.0, ge=0)
    # How long the viewer-token route remembers that a model is translated (its URN and region), sparing a
    # database round trip per token. Untranslated or unknown models are never remembered, so a model that
    # finishes translating gets tokens at once; one that stops being translated may get them this long.
    model_cache_seconds: float = Field(default=10.0, ge=0)
    # The APS Viewer JS and CSS the /viewer page loads; the page's Content-Security-Policy allows scripts
    # from this server and from the JS file's folder only (the Viewer loads its worker and extensions from
    # there). An exact version: no wildcards.
    # The defaults (aps_client.viewer) pin one Viewer version for this page and the Airflow run page.
    viewer_js_url: str = VIEWER_JS_URL
    viewer_css_url: str = VIEWER_CSS_URL
    # The /viewer page trades an API key for an HttpOnly session cookie that lets it fetch viewer tokens
    # (only those) for this long.
    viewer_session_seconds: int = Field(default=8 * 3600, ge=1)
    # Signs the session cookies. Empty: derived from the APS client secret, which every server process of
    # a deployment shares already (rotating that secret then ends the sessions).
    viewer_session_secret: SecretStr = SecretStr("")

    # APS extraction.finished callbacks (aps_api.webhooks): the hook secret (and, while it is rotated, the
    # previous one), and a login in role aps_webhook_receiver. Without both, the route is not mounted.
    webhook_secret: SecretStr = SecretStr("")
    webhook_previous_secret: SecretStr = SecretStr("")
    webhook_database_url: SecretStr = SecretStr("")

    @field_validator("viewer_js_url", "viewer_css_url")
    @classmethod
    def _pinned_https(cls, value: str) -> str:
        if not value.startswith("https://") or any(c in value for c in "*; '\"\n"):
            raise ValueError("must be an https URL of one exact Viewer version (no wildcards)")
        return value

    @field_validator("workers", mode="before")
    @classmethod
    def _empty_workers(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("aps_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @property
    def webhooks_configured(self) -> bool:
        return bool(self.webhook_secret.get_secret_value() and self.webhook_database_url.get_secret_value())

    @property
    def aps_configured(self) -> bool:
        return bool(self.aps_client_id and self.aps_client_secret.get_secret_value())
