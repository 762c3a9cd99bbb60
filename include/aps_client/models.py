"""Typed results. Field names are snake_case; APS's camelCase names are accepted as aliases, and unknown
fields are kept (extra="allow") so a new APS field never breaks parsing."""

from __future__ import annotations

import re
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel


class APSModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


def _true_string(value: Any) -> bool:
    """APS sends hasThumbnail as the strings "true"/"false"."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


class Token(BaseModel):
    """A 2-legged access token. The token text is kept out of repr() so it never lands in a log."""

    model_config = ConfigDict(extra="allow")

    access_token: str = Field(repr=False)
    token_type: str = "Bearer"
    expires_in: int
    expires_at: float = 0.0  # epoch seconds, computed from expires_in when APS does not send it
    scopes: tuple[str, ...] = ()

    def expires_within(self, seconds: float) -> bool:
        return time.time() + seconds >= self.expires_at


class Bucket(APSModel):
    bucket_key: str
    bucket_owner: str | None = None
    created_date: int | None = None
    permissions: list[dict[str, Any]] = Field(default_factory=list)
    policy_key: str | None = None


class ObjectDetails(APSModel):
    bucket_key: str
    object_key: str
    object_id: str
    size: int | None = None
    sha1: str | None = None
    content_type: str | None = None
    location: str | None = None


class UploadState(BaseModel):
    """Where an upload stands; persist `model_dump(mode="json")` and pass it back to resume."""

    upload_key: str | None = None
    part_size: int
    size: int
    completed_parts: dict[int, str] = Field(default_factory=dict)  # part number (1-based) -> ETag


class JobAccepted(APSModel):
    urn: str
    result: str | None = None
    already_translated: bool = False  # HTTP 201: the requested derivatives already exist
    accepted_jobs: dict[str, Any] | None = None


class ManifestMessage(APSModel):
    type: str = "info"
    code: str = ""
    message: str = ""

    @field_validator("message", mode="before")
    @classmethod
    def _join(cls, value: Any) -> str:
        # APS sends either a string or a list of strings.
        if isinstance(value, list):
            return " ".join(str(item) for item in value)
        return "" if value is None else str(value)


class ManifestNode(APSModel):
    """A derivative or any resource below it; the manifest tree is recursive."""

    guid: str | None = None
    type: str | None = None
    role: str | None = None
    mime: str | None = None
    urn: str | None = None
    name: str | None = None
    status: str | None = None
    progress: str | None = None
    has_thumbnail: bool = False
    messages: list[ManifestMessage] = Field(default_factory=list)
    children: list[ManifestNode] = Field(default_factory=list)

    @field_validator("has_thumbnail", mode="before")
    @classmethod
    def _parse_has_thumbnail(cls, value: Any) -> bool:
        return _true_string(value)

    def walk(self) -> list[ManifestNode]:
        nodes: list[ManifestNode] = [self]
        for child in self.children:
            nodes.extend(child.walk())
        return nodes


class Derivative(ManifestNode):
    output_type: str | None = None


#: Manifest statuses after which nothing changes any more (APS's words); the one definition of "finished".
FINISHED_STATUSES = frozenset({"success", "failed", "timeout"})
#: The statuses of a job still running; whether one can be reused is `derivative.job_is_reusable`.
RUNNING_STATUSES = frozenset({"pending", "inprogress"})
_PERCENT = re.compile(r"(\d+)\s*%")


class Manifest(APSModel):
    urn: str = ""
    status: str = "pending"
    progress: str = ""
    region: str | None = None
    version: str | None = None
    has_thumbnail: bool = False
    derivatives: list[Derivative] = Field(default_factory=list)

    @field_validator("has_thumbnail", mode="before")
    @classmethod
    def _parse_has_thumbnail(cls, value: Any) -> bool:
        return _true_string(value)

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def progress_percent(self) -> int | None:
        """ "40% complete" -> 40, "complete" -> 100, anything else -> None. Cosmetic: may stay at 99%."""
        if self.progress.strip().lower() == "complete":
            return 100
        match = _PERCENT.search(self.progress)
        return int(match.group(1)) if match else None

    def messages(self) -> list[ManifestMessage]:
        """Every message anywhere in the tree (errors and warnings of all derivatives and resources)."""
        found: list[ManifestMessage] = []
        for derivative in self.derivatives:
            for node in derivative.walk():
                found.extend(node.messages)
        return found


class ModelView(APSModel):
    guid: str
    name: str = ""
    role: str = ""
    is_master_view: bool = False


class TreeNode(APSModel):
    objectid: int
    name: str = ""
    objects: list[TreeNode] = Field(default_factory=list)


class TreeEntry(APSModel):
    """One node of an object tree, flattened: what the streaming reader yields instead of nested nodes."""

    objectid: int
    name: str = ""
    parent: int | None = None  # the parent's objectid; None for a root
    depth: int = 0


class ObjectProperties(APSModel):
    objectid: int
    name: str = ""
    external_id: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
