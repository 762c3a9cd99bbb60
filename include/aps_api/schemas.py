"""Response bodies of the API (pydantic), which are also the OpenAPI schema at /docs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SourceFile(BaseModel):
    """The S3 object the model was first made from."""

    id: int
    pipeline: str
    bucket: str
    key: str
    etag: str
    size: int
    content_type: str | None
    state: str
    discovered_at: datetime


class ModelSummary(BaseModel):
    id: int
    urn: str | None = Field(description="Model Derivative URN (base64url of the object id)")
    region: str
    status: str
    reason: str | None
    source: SourceFile | None
    created_at: datetime
    updated_at: datetime
    loaded_at: datetime | None


class ModelPage(BaseModel):
    items: list[ModelSummary]
    next_cursor: str | None = Field(
        description="pass as `cursor` to get the next page; null on the last page"
    )


class StatusChange(BaseModel):
    status: str
    reason: str | None
    run_id: str | None
    changed_at: datetime


class TranslationAttempt(BaseModel):
    attempt: int
    status: str
    progress: str | None
    output_formats: list[Any]
    forced: bool
    messages: list[Any]
    job_submitted_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class DerivativeNode(BaseModel):
    guid: str | None
    parent_guid: str | None
    name: str | None
    output_type: str | None
    type: str | None
    role: str | None
    mime: str | None
    urn: str | None
    status: str | None
    progress: str | None


class ModelViewInfo(BaseModel):
    guid: str
    name: str | None
    role: str | None
    is_master_view: bool


class ModelDetail(ModelSummary):
    object_id: str | None
    bucket_key: str | None
    object_key: str | None
    has_thumbnail: bool
    status_history: list[StatusChange]
    translations: list[TranslationAttempt]
    derivatives: list[DerivativeNode]
    views: list[ModelViewInfo]


class ViewerToken(BaseModel):
    access_token: str = Field(description="APS access token for the Viewer; narrow scope, short-lived")
    token_type: str
    expires_in: int = Field(description="seconds the token stays valid")
    urn: str
    region: str
    viewer_api: str = Field(description="the Viewer's `api` option for the model's region (streamingV2...)")
    scope: str = Field(description="`data:read:<urn>` (per-model mode, the default), or `viewables:read`")


class ModelObjectInfo(BaseModel):
    view_guid: str
    object_id: int = Field(description="APS objectid: not stable across re-translations; use external_id")
    external_id: str | None
    name: str | None
    parent_object_id: int | None
    depth: int


class ObjectPage(BaseModel):
    items: list[ModelObjectInfo]
    next_cursor: str | None


class PropertyValue(BaseModel):
    view_guid: str
    object_id: int
    external_id: str | None
    category: str | None
    name: str
    value: str | None
    value_num: float | None = Field(
        description="the value's number, with or without a unit (`70 mm` is 70; the property's own unit)")


class PropertyPage(BaseModel):
    items: list[PropertyValue]
    next_cursor: str | None


class SearchHit(BaseModel):
    """One property value found by `/v1/search`, in the document version its model is."""

    document_id: int | None = Field(description="null for a model loaded before documents existed")
    version: int | None = Field(description="the version's number in its document's landing order")
    model_id: int
    external_id: str | None
    object_name: str | None
    category: str | None
    name: str
    value: str | None


class SearchPage(BaseModel):
    items: list[SearchHit]
    next_cursor: str | None = Field(
        description="pass as `cursor` to get the next page; null on the last page"
    )


class LatestVersion(BaseModel):
    version: int = Field(description="the document's highest version number")
    model_id: int | None = Field(description="the model holding its results (/v1/models/{id})")
    loaded_at: datetime


class DocumentSummary(BaseModel):
    id: int
    pipeline: str
    key: str = Field(description="the landing key, or the metadata field `document` its files name")
    project: str | None
    versions: int = Field(description="how many versions it has (loaded, deleted or purged)")
    latest: LatestVersion | None
    deleted_at: datetime | None = Field(description="when its latest object left the landing")


class DocumentPage(BaseModel):
    items: list[DocumentSummary]
    next_cursor: str | None


class DocumentVersionInfo(BaseModel):
    version: int = Field(description="1..n in the order the versions landed (LastModified, VersionId)")
    model_id: int | None
    file_id: int
    etag: str
    version_id: str | None = Field(description="the S3 object version, when the bucket keeps versions")
    landed_at: datetime
    loaded_at: datetime
    state: str = Field(description="`loaded`, `deleted` (its object left the landing; results kept) or "
                                   "`purged` (results removed by `keep_versions`)")
    deleted_at: datetime | None
    purged_at: datetime | None


class VersionPage(BaseModel):
    items: list[DocumentVersionInfo]
    next_cursor: str | None


class DiffCounts(BaseModel):
    added: int
    removed: int
    changed: int
    unchanged: int


class PropertyDifference(BaseModel):
    category: str
    name: str
    before: str | None
    after: str | None


class ElementDifference(BaseModel):
    change: str = Field(description="`added`, `removed` or `changed`")
    external_id: str = Field(description="the element's id in `to` (in `from` for a removed one)")
    previous_external_id: str | None = Field(description="its id in `from`, when that differs")
    name: str | None
    category: str | None
    matched_by: str | None = Field(description="how a changed element was paired: `global_id`, `id`, "
                                                "`name` or `signature`; null when added or removed")
    properties: list[PropertyDifference]


class DiffPage(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: int = Field(alias="from", description="the earlier version's number")
    to: int = Field(description="the later version's number")
    stored: bool = Field(description="true when read from the diff stored at load; false when computed "
                                     "for this request")
    counts: DiffCounts
    items: list[ElementDifference]
    next_cursor: str | None


class ComponentHealth(BaseModel):
    ok: bool
    detail: str


class Health(BaseModel):
    status: str = Field(description="`ok` when the database and APS are both reachable, else `degraded`")
    version: str
    database: ComponentHealth
    aps: ComponentHealth


class ErrorBody(BaseModel):
    detail: Any


class ValidationIssue(BaseModel):
    """One invalid parameter, as FastAPI (and the cursor and date-time checks) report it."""

    loc: list[str | int]
    msg: str
    type: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class ValidationErrorBody(BaseModel):
    detail: list[ValidationIssue]


_RETRY_AFTER = {"Retry-After": {"description": "whole seconds to wait before trying again",
                                "schema": {"type": "string", "pattern": "^[0-9]+$"}}}

# Responses shared by the routes that need an API key, by the ones about one model, by those that read the
# results database and by those that take parameters.
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing, invalid or revoked API key",
          "headers": {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}}},
    429: {
        "model": ErrorBody,
        "description": "rate limit reached (per key, or invalid keys per address); see `Retry-After`",
        "headers": _RETRY_AFTER,
    },
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "no such model"}}
DOCUMENT_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "no such document (or no such version of it)"}}
DIFF_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "no diff to give: the document has one version, a version's "
                                             "results were purged, or the pair has no stored diff and is "
                                             "too large to compute on request"}}
DATABASE_ERRORS: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "the results database is unavailable; try again shortly",
          "headers": _RETRY_AFTER},
}
INVALID_PARAMETERS: dict[int | str, dict[str, Any]] = {
    422: {"model": ValidationErrorBody,
          "description": "an invalid parameter, including a `cursor` this API did not issue"},
}
