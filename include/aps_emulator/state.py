"""The emulator's memory: records for tokens, buckets, objects, uploads, translation jobs and hooks.

One `Store` per app holds an `EmulatorState` (plain pydantic records, so it can be written as JSON) and the
directories where uploaded bytes live (parts and assembled objects are files, never held in memory).
With a state directory the JSON is rewritten after every change and read back at start-up.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

log = logging.getLogger(__name__)

STATE_FILE = "state.json"


class TokenRecord(BaseModel):
    client_id: str
    scopes: list[str]
    expires_at: float


class BucketRecord(BaseModel):
    bucket_key: str
    owner: str
    region: str
    policy_key: str
    created_ms: int
    permissions: list[dict[str, str]]


class ObjectRecord(BaseModel):
    bucket_key: str
    object_key: str
    size: int
    sha1: str
    content_type: str
    blob: str  # file name under the blob directory
    created_ms: int
    modified_ms: int

    @property
    def object_id(self) -> str:
        return f"urn:adsk.objects:os.object:{self.bucket_key}/{self.object_key}"


class PartRecord(BaseModel):
    size: int
    etag: str  # md5 hex, unquoted


class UploadRecord(BaseModel):
    upload_key: str
    bucket_key: str
    object_key: str
    started_at: float
    expires_at: float
    parts: dict[int, PartRecord] = Field(default_factory=dict)


Outcome = Literal["success", "failed", "timeout"]


class JobRecord(BaseModel):
    """One translation of one design in one region (re-posting with x-ads-force replaces it)."""

    region: str
    urn: str  # URL-safe unpadded base64 of object_id
    object_id: str
    bucket_key: str
    object_key: str
    client_id: str
    size: int
    sha1: str
    started_at: float
    duration: float
    outcome: Outcome
    messages: list[dict[str, Any]] = Field(default_factory=list)
    formats: list[dict[str, Any]]
    workflow: str | None = None
    workflow_attribute: dict[str, Any] | None = None
    generation: int = 1
    # (view guid) -> number of tree/properties calls answered so far (the first few get 202).
    property_calls: dict[str, int] = Field(default_factory=dict)
    notified: bool = False

    @property
    def finishes_at(self) -> float:
        return self.started_at + self.duration


class HookRecord(BaseModel):
    hook_id: str
    region: str
    system: str
    event: str
    callback_url: str
    scope: dict[str, Any]
    hook_attribute: dict[str, Any] | None = None
    filter: str | None = None
    created_by: str
    created_ms: int
    status: str = "active"
    auto_reactivate: bool = False
    hook_expiry: str | None = None
    payload_only: bool = False
    secret: str | None = None  # per-hook secret (emulator convenience); else the app's webhook token


class DeliveryRecord(BaseModel):
    """One webhook callback, for /_emulator/deliveries (lets tests see retries and outcomes)."""

    delivery_id: str
    hook_id: str
    callback_url: str
    urn: str
    status: str
    attempts: int = 0
    last_status_code: int | None = None
    delivered: bool = False


class EmulatorState(BaseModel):
    signing_key: str = Field(default_factory=lambda: secrets.token_hex(32))
    clock_offset: float = 0.0
    tokens: dict[str, TokenRecord] = Field(default_factory=dict)
    buckets: dict[str, BucketRecord] = Field(default_factory=dict)
    objects: dict[str, ObjectRecord] = Field(default_factory=dict)  # "bucket/object" -> record
    uploads: dict[str, UploadRecord] = Field(default_factory=dict)
    completed_uploads: dict[str, str] = Field(default_factory=dict)  # uploadKey -> "bucket/object"
    jobs: dict[str, JobRecord] = Field(default_factory=dict)  # "REGION|objectId" -> record
    hooks: dict[str, HookRecord] = Field(default_factory=dict)
    webhook_tokens: dict[str, str] = Field(default_factory=dict)  # client id -> secret token
    deliveries: list[DeliveryRecord] = Field(default_factory=list)


def object_ref(bucket_key: str, object_key: str) -> str:
    return f"{bucket_key}/{object_key}"


def job_ref(region: str, object_id: str) -> str:
    return f"{region}|{object_id}"


class Store:
    """State plus the files behind it, guarded by one lock (handlers may run in worker threads)."""

    def __init__(self, state_dir: Path | None) -> None:
        self.lock = threading.RLock()
        self.state_dir = state_dir
        if state_dir is None:
            self.root = Path(tempfile.mkdtemp(prefix="aps-emulator-"))
        else:
            self.root = state_dir
            self.root.mkdir(parents=True, exist_ok=True)
        self.blob_dir = self.root / "blobs"
        self.part_dir = self.root / "parts"
        self.blob_dir.mkdir(exist_ok=True)
        self.part_dir.mkdir(exist_ok=True)
        self.state = self._load()
        self.dirty = False

    # -- persistence -----------------------------------------------------------------------------------------
    def _load(self) -> EmulatorState:
        if self.state_dir is not None and (self.state_dir / STATE_FILE).exists():
            try:
                return EmulatorState.model_validate_json((self.state_dir / STATE_FILE).read_bytes())
            except ValueError:
                log.exception("ignoring unreadable state file in %s", self.state_dir)
        return EmulatorState()

    def mark_dirty(self) -> None:
        self.dirty = True

    def save_if_dirty(self) -> None:
        """Write the state file atomically (no-op without a state directory)."""
        with self.lock:
            if not self.dirty:
                return
            self.dirty = False
            if self.state_dir is None:
                return
            payload = self.state.model_dump_json()
        tmp = self.state_dir / f".{STATE_FILE}.{os.getpid()}.tmp"
        tmp.write_text(payload)
        os.replace(tmp, self.state_dir / STATE_FILE)

    def reset(self) -> None:
        """Forget everything, including uploaded bytes."""
        with self.lock:
            self.state = EmulatorState()
            for directory in (self.blob_dir, self.part_dir):
                shutil.rmtree(directory, ignore_errors=True)
                directory.mkdir(parents=True, exist_ok=True)
            self.dirty = True
        self.save_if_dirty()

    def close(self) -> None:
        self.save_if_dirty()
        if self.state_dir is None:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- file locations ------------------------------------------------------------------------------------
    def part_path(self, upload_key: str, part: int) -> Path:
        return self.part_dir / upload_key / f"{part:05d}"

    def blob_path(self, blob: str) -> Path:
        return self.blob_dir / blob

    def drop_upload_files(self, upload_key: str) -> None:
        shutil.rmtree(self.part_dir / upload_key, ignore_errors=True)
