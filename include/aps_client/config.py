"""Settings for the APS clients: credentials, where APS lives, and the request/upload policy knobs."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

APS_BASE_URL = "https://developer.api.autodesk.com"
DEFAULT_SCOPES: tuple[str, ...] = ("data:read", "data:write", "data:create", "bucket:create", "bucket:read")
MIB = 1024 * 1024

# Requests per minute per client id and endpoint family (aps-api.md §5). A family missing here is not
# limited client-side (APS publishes no figure for OSS, manifest, thumbnail or formats).
DEFAULT_RATE_LIMITS: dict[str, int] = {
    "auth_token": 500,
    "md_job": 500,
    "md_tree": 300,
    "md_properties": 300,
    "md_properties_query": 300,
    "md_forceget": 60,
    "hooks_read": 300,
    "hooks_write": 50,
    "hooks_modify": 300,
    "hooks_token": 50,
}


class APSConfig(BaseModel):
    """Everything a client needs. Immutable; secrets are SecretStr so they never show in reprs or logs."""

    model_config = ConfigDict(frozen=True)

    client_id: str
    client_secret: SecretStr
    base_url: str = APS_BASE_URL
    region: str = "US"
    scopes: tuple[str, ...] = DEFAULT_SCOPES

    # Request policy (transport.py).
    timeout: float = 30.0
    max_attempts: int = Field(default=6, ge=1)
    max_retry_seconds: float = Field(default=300.0, gt=0)
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    token_refresh_margin: float = 300.0
    # Share tokens between processes through files in this directory (token_file.py); None = per process.
    token_cache_dir: Path | None = None
    rate_limits: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))

    # Polling of 202 answers (object tree, properties).
    poll_initial_delay: float = 1.0
    poll_max_delay: float = 15.0
    poll_timeout: float = 600.0

    # Signed-S3 multipart upload (upload.py).
    upload_part_size: int = Field(default=5 * MIB, ge=5 * MIB)
    upload_parallelism: int = Field(default=4, ge=1)
    upload_url_batch: int = Field(default=25, ge=1, le=25)
    upload_url_minutes: int = Field(default=10, ge=1, le=60)
    upload_max_url_refreshes: int = Field(default=3, ge=0)
    upload_max_parts: int = Field(default=10_000, ge=1)

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("region")
    @classmethod
    def _upper_region(cls, value: str) -> str:
        return value.upper()

    @classmethod
    def from_env(cls, prefix: str = "APS_", **overrides: object) -> APSConfig:
        """Build from APS_CLIENT_ID, APS_CLIENT_SECRET, APS_BASE_URL, APS_REGION and APS_SCOPES
        (space- or comma-separated)."""
        env = os.environ
        missing = [
            f"{prefix}{name}" for name in ("CLIENT_ID", "CLIENT_SECRET") if not env.get(f"{prefix}{name}")
        ]
        if missing and not {"client_id", "client_secret"} <= overrides.keys():
            raise ValueError(f"APS credentials missing: set {' and '.join(missing)}")
        values: dict[str, object] = {
            "client_id": env.get(f"{prefix}CLIENT_ID"),
            "client_secret": env.get(f"{prefix}CLIENT_SECRET"),
        }
        if env.get(f"{prefix}BASE_URL"):
            values["base_url"] = env[f"{prefix}BASE_URL"]
        if env.get(f"{prefix}REGION"):
            values["region"] = env[f"{prefix}REGION"]
        if env.get(f"{prefix}SCOPES"):
            values["scopes"] = tuple(env[f"{prefix}SCOPES"].replace(",", " ").split())
        values.update(overrides)
        return cls(**values)

    def rate_limit(self, family: str | None) -> int | None:
        return self.rate_limits.get(family) if family else None
