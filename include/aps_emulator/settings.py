"""Emulator settings: start-up values from the environment (APS_EMULATOR_*), some changeable at run time.

`Tunables` are the knobs tests and benchmarks turn through PUT /_emulator/config (names are a contract, see
README.md, "Settings"). `EmulatorSettings` adds the start-up-only values (client pairs, state directory).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_CLIENTS = "emulator-client:emulator-secret"


class Tunables(BaseModel):
    """Settings that PUT /_emulator/config may change while the emulator runs."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    translation_seconds: float = Field(3.0, ge=0)
    translation_seconds_per_mb: float = Field(0.0, ge=0)
    # Per source extension ("ifc": 10.0) overrides translation_seconds for that format.
    translation_seconds_by_extension: dict[str, float] = Field(default_factory=dict)
    fail_keys: list[str] = Field(default_factory=list)
    timeout_keys: list[str] = Field(default_factory=list)
    token_lifetime_seconds: int = Field(3599, ge=1)
    url_lifetime_seconds: float | None = Field(None, gt=0)
    fault_429_rate: float = Field(0.0, ge=0, le=1)
    fault_429_operations: list[str] = Field(default_factory=list)
    retry_after_seconds: int = Field(1, ge=0)
    fault_5xx_burst: int = Field(0, ge=0)
    latency_ms: int = Field(0, ge=0)
    latency_operations: list[str] = Field(default_factory=list)
    rate_limits_enabled: bool = False
    properties_202_count: int = Field(1, ge=0)
    large_response_bytes: int = Field(20 * 1024 * 1024, ge=1)
    forceget_ceiling_bytes: int = Field(800 * 1024 * 1024, ge=1)  # 413 even with forceget above this
    min_part_bytes: int = Field(5 * 1024 * 1024, ge=0)
    # OSS retention by bucket policy (persistent: for ever), counted from an object's last upload.
    transient_retention_seconds: float = Field(24 * 3600, gt=0)
    temporary_retention_seconds: float = Field(30 * 24 * 3600, gt=0)
    # Emulator-specific extras (not in APS): limits and webhook delivery behaviour.
    max_urls_per_request: int = Field(25, ge=1)
    synthetic_object_count: int = Field(40, ge=1)
    content_parse_max_bytes: int = Field(64 * 1024 * 1024, ge=1)
    webhook_max_attempts: int = Field(4, ge=1)
    webhook_retry_base_seconds: float = Field(1.0, ge=0)
    webhook_timeout_seconds: float = Field(6.0, gt=0)
    # Fault: callbacks are recorded as deliveries but never sent (a lost webhook: the poll is the net).
    webhook_drop_deliveries: bool = False
    # Real-shape mode (real_shapes.py): answers in real APS's shapes, drawn per response from this seed.
    real_shapes_seed: int | None = None


class EmulatorSettings(BaseSettings, Tunables):
    """Everything the emulator is started with; environment variables are APS_EMULATOR_<UPPER_NAME>."""

    model_config = SettingsConfigDict(env_prefix="APS_EMULATOR_", extra="ignore")

    # "id:secret[,id:secret...]"; a SecretStr so the secrets never show in reprs or logs.
    clients: SecretStr = SecretStr(DEFAULT_CLIENTS)
    # When set, state (and uploaded bytes) live here and survive a restart.
    state_dir: Path | None = None
    webhook_poll_seconds: float = Field(0.25, gt=0)

    def client_secrets(self) -> dict[str, str]:
        """Known client id -> secret."""
        pairs: dict[str, str] = {}
        for item in self.clients.get_secret_value().split(","):
            client_id, sep, secret = item.strip().partition(":")
            if sep and client_id:
                pairs[client_id] = secret
        return pairs

    def tunables(self) -> Tunables:
        return Tunables.model_validate(self.model_dump(include=set(Tunables.model_fields)))
