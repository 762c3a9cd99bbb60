"""Typed results. Field names are snake_case; APS's camelCase names are accepted as aliases, and unknown
fields are kept (extra="allow") so a new APS field never breaks parsing."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator
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
    # Epoch milliseconds: bucket details (and today's list) write `createdDate`, older lists `createDate`.
    created_date: int | None = Field(
        default=None, validation_alias=AliasChoices("createdDate", "createDate", "created_date"))
    permissions: list[dict[str, Any]] = Field(default_factory=list)
    policy_key: str | None = None

    @property
    def created_at(self) -> datetime | None:
        """When the bucket was created (UTC), if APS said."""
        if self.created_date is None:
            return None
        return datetime.fromtimestamp(self.created_date / 1000, UTC)


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
    # Sent by APS beside acceptedJobs when the job names a workflow; its items' shape is not documented, so
    # they are kept as sent.
    register_keys: list[Any] = Field(default_factory=list)


_PLACEHOLDER = re.compile(r"\{(\d+)\}")
ELLIPSIS = "…"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


class ManifestMessage(APSModel):
    """One of APS's messages. `message` is the text with its arguments filled in: APS sends either a string
    or a `[template, arg, ...]` list whose template names its arguments `{0}`, `{1}` ("The file: {0} does
    not exist."). The template and arguments are kept too (`template`, `arguments`) so that a bounded
    rendering (`bounded`) can shorten the template's words and never the arguments (the missing file names
    a user needs)."""

    type: str = "info"
    code: str = ""
    message: str = ""
    template: str = Field("", exclude=True)
    arguments: list[str] = Field(default_factory=list, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _split_template(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "template" in data:
            return data
        raw = data.get("message")
        data = dict(data)
        if isinstance(raw, list):
            data["template"] = _text(raw[0]) if raw else ""
            data["arguments"] = [_text(item) for item in raw[1:]]
        else:
            data["template"], data["arguments"] = _text(raw), []
        data["message"] = "".join(text for text, _ in _segments(data["template"], data["arguments"]))
        return data

    def bounded(self, limit: int) -> str:
        """`message` in at most `limit` characters where possible: the template's words are cut from their
        tail (marked "…"), the arguments are always whole, even when they alone are longer than `limit`."""
        if len(self.message) <= limit:
            return self.message
        segments = _segments(self.template, self.arguments)
        room = limit - len(ELLIPSIS) - sum(len(text) for text, is_argument in segments if is_argument)
        out: list[str] = []
        cut = False
        for text, is_argument in segments:
            if is_argument:
                out.append(text)
            elif not cut and len(text) <= room:
                out.append(text)
                room -= len(text)
            else:
                if not cut:
                    out.append(text[: max(room, 0)] + ELLIPSIS)
                    cut = True
                elif text.startswith(" "):  # keep arguments apart once the words between them are gone
                    out.append(" ")
        return "".join(out)


def _segments(template: str, arguments: list[str]) -> list[tuple[str, bool]]:
    """The template as (text, is_argument) pieces, each `{n}` replaced by argument n. Arguments the
    template does not name follow it, so none is lost; a `{n}` without its argument stays as written."""
    pieces: list[tuple[str, bool]] = []
    used: set[int] = set()
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        index = int(match.group(1))
        if index >= len(arguments):
            continue
        pieces.append((template[position:match.start()], False))
        pieces.append((arguments[index], True))
        used.add(index)
        position = match.end()
    pieces.append((template[position:], False))
    rest = [argument for index, argument in enumerate(arguments) if index not in used]
    for argument in rest:
        pieces.extend([(" ", False), (argument, True)])
    return [(text, is_argument) for text, is_argument in pieces if text or is_argument]


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
    # APS puts messages at the root too (e.g. a missing reference of the whole design): `messages()` reads
    # them with the derivatives'. Named apart from the method; dumped by alias as APS's `messages`.
    root_messages: list[ManifestMessage] = Field(default_factory=list, alias="messages")
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
        """Every message anywhere in the manifest: the root's, then each derivative's and each node's below
        it (a geometry node or a resource), in document order."""
        found: list[ManifestMessage] = list(self.root_messages)
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

    _name = field_validator("name", mode="before")(classmethod(lambda cls, value: _text(value)))
    _objects = field_validator("objects", mode="before")(classmethod(lambda cls, value: value or []))


class TreeEntry(APSModel):
    """One node of an object tree, flattened: what the streaming reader yields instead of nested nodes."""

    objectid: int
    name: str = ""
    parent: int | None = None  # the parent's objectid; None for a root
    depth: int = 0

    _name = field_validator("name", mode="before")(classmethod(lambda cls, value: _text(value)))


class ObjectProperties(APSModel):
    """One entry of a properties answer. `properties` is APS's as sent: categories (`{"Item": {"GLOBALID":
    ...}}`), uncategorised values at the top (`{"Name": "Wall"}`), values that are lists (IFC's
    `["2O2Fr$t4X7Zf8NOew3FLOH"]`); `{}` or null for an object without any."""

    objectid: int
    name: str = ""
    external_id: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)

    _name = field_validator("name", mode="before")(classmethod(lambda cls, value: _text(value)))
    _properties = field_validator("properties", mode="before")(classmethod(lambda cls, value: value or {}))

    @field_validator("external_id", mode="before")
    @classmethod
    def _external_id_text(cls, value: Any) -> str | None:
        return None if value is None else str(value)


class ExtractionFinished(BaseModel):
    """An `extraction.finished` webhook callback, read from what APS really sends (aps-api.md §2.17):
    `payload.Payload.scope` is an id string (the hook's `{workflow}` is in `hook.scope`), `registerKey` a list
    of `{name}` that may be empty. With `callbackWithEventPayloadOnly` only the `payload` part comes."""

    model_config = ConfigDict(extra="allow")

    urn: str
    status: str
    scope: str | None = None  # Payload.scope as sent (an id); a dict would be kept as JSON text
    register_keys: list[str] = Field(default_factory=list)
    workflow: str | None = None  # the hook's scope.workflow, when the hook part was sent
    timestamp_ms: int | None = None

    @classmethod
    def from_callback(cls, body: dict[str, Any]) -> ExtractionFinished:
        event = body.get("payload", body)  # callbackWithEventPayloadOnly: the event is the body
        inner = event.get("Payload") or {}
        scope = inner.get("scope")
        keys = [k.get("name") if isinstance(k, dict) else k for k in inner.get("registerKey") or []]
        hook_scope = (body.get("hook") or {}).get("scope") or {}
        urn = str(event.get("URN") or body.get("resourceUrn") or "")
        return cls(urn=urn, status=str(inner.get("status", "")),
                   scope=scope if isinstance(scope, str | None) else json.dumps(scope, sort_keys=True),
                   register_keys=[str(k) for k in keys if k is not None],
                   workflow=hook_scope.get("workflow") if isinstance(hook_scope, dict) else None,
                   timestamp_ms=event.get("TimeStamp"))
