"""Translation jobs seen through time: manifest JSON and model views for a job at a given clock reading.

A job is decided when it is posted (outcome success/failed/timeout and its messages); what the manifest
shows is computed from the emulator clock on each read: `pending` for the first tenth of the duration
(at most 1 s), then `inprogress` with a rising "NN% complete", then the outcome with progress "complete".
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from aps_emulator.content.checks import extension_of
from aps_emulator.state import JobRecord

THUMBNAIL_SIZES = (100, 200, 400)
GEOMETRY_TYPES = ("svf", "svf2")
# Sources that also carry 2D sheets; IFC, OBJ and the like are 3D only.
SOURCES_WITH_2D = frozenset({"dwg", "dxf", "dwf", "dwfx", "pdf", "rvt", "dgn", "idw"})
TIMEOUT_MESSAGE = {"type": "error", "code": "TranslationWorker-Timeout",
                   "message": "The translation did not finish within the allowed time."}


@dataclass(frozen=True)
class View:
    guid: str
    role: str  # "3d" | "2d"
    name: str
    is_master: bool


def job_status(job: JobRecord, now: float) -> tuple[str, int]:
    """(manifest status, percent) at time `now`."""
    elapsed = now - job.started_at
    if elapsed >= job.duration:
        return job.outcome, 100
    if elapsed < min(1.0, job.duration / 10):
        return "pending", 0
    return "inprogress", max(1, min(99, int(100 * elapsed / job.duration)))


def is_finished(job: JobRecord, now: float) -> bool:
    return now - job.started_at >= job.duration


def _guid(job: JobRecord, label: str) -> str:
    # Stable for the same design content, so re-translating identical bytes keeps view guids.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{job.urn}/{job.sha1}/{label}"))


def file_name(job: JobRecord) -> str:
    return job.object_key.rsplit("/", 1)[-1]


def views(job: JobRecord) -> list[View]:
    """Model views a successful svf/svf2 translation produces (empty when none was requested)."""
    geometry = [f for f in job.formats if f.get("type") in GEOMETRY_TYPES]
    if not geometry:
        return []
    wanted = {v for f in geometry for v in (f.get("views") or ["2d", "3d"])}
    has_2d = extension_of(job.object_key) in SOURCES_WITH_2D
    result = []
    if "3d" in wanted or not has_2d:
        result.append(View(_guid(job, "3d"), "3d", "{3D}", True))
    if "2d" in wanted and has_2d:
        result.append(View(_guid(job, "2d"), "2d", "Sheet 1", False))
    return result


def _resource(job: JobRecord, label: str, role: str, mime: str, urn_path: str | None = None,
              **extra: Any) -> dict[str, Any]:
    """A manifest resource. The spec requires guid, type, role and status on every one, at every depth; only
    finished derivatives have resources, so their status is always success."""
    resource: dict[str, Any] = {"guid": _guid(job, label), "type": "resource", "role": role, "mime": mime,
                                "status": "success", **extra}
    if urn_path is not None:
        resource["urn"] = f"urn:adsk.viewing:fs.file:{job.urn}/output/{urn_path}"
    return resource


def _thumbnail_resources(job: JobRecord, label: str) -> list[dict[str, Any]]:
    return [_resource(job, f"{label}/thumb/{size}", "thumbnail", "image/png", f"{label}/preview{size}.png",
                      resolution=[size, size])
            for size in THUMBNAIL_SIZES]


def _geometry_derivative(job: JobRecord, output_type: str) -> dict[str, Any]:
    children: list[dict[str, Any]] = []
    for view in views(job):
        label = f"{view.role}/graphics/{output_type}"
        graphics = (_resource(job, label, "graphics", "application/autodesk-svf2") if output_type == "svf2"
                    else _resource(job, label, "graphics", "application/autodesk-svf", f"{view.role}/0.svf"))
        children.append({
            "guid": view.guid, "type": "geometry", "role": view.role, "name": view.name,
            "viewableID": view.guid, "status": "success", "progress": "complete", "hasThumbnail": "true",
            "isMasterView": view.is_master,
            "children": [graphics, *_thumbnail_resources(job, view.role)],
        })
    children.append(_resource(job, f"propertydb/{output_type}", "Autodesk.CloudPlatform.PropertyDatabase",
                              "application/autodesk-db", "Resource/model.sdb"))
    return {"name": file_name(job), "hasThumbnail": "true", "status": "success", "progress": "complete",
            "outputType": output_type, "children": children}


def _successful_derivative(job: JobRecord, output_type: str) -> dict[str, Any]:
    if output_type in GEOMETRY_TYPES:
        return _geometry_derivative(job, output_type)
    if output_type == "thumbnail":
        return {"name": file_name(job), "hasThumbnail": "true", "status": "success", "progress": "complete",
                "outputType": "thumbnail", "children": _thumbnail_resources(job, "thumbnail")}
    stem = file_name(job).rsplit(".", 1)[0]
    return {"name": file_name(job), "hasThumbnail": "false", "status": "success", "progress": "complete",
            "outputType": output_type,
            "children": [_resource(job, f"file/{output_type}", output_type, "application/octet-stream",
                                   f"{stem}.{output_type}")]}


def has_thumbnail(job: JobRecord, now: float) -> bool:
    status, _ = job_status(job, now)
    return status == "success" and any(
        f.get("type") in (*GEOMETRY_TYPES, "thumbnail") for f in job.formats)


def manifest_body(job: JobRecord, now: float) -> dict[str, Any]:
    status, percent = job_status(job, now)
    types = [str(f.get("type")) for f in job.formats]
    derivatives: list[dict[str, Any]]
    if status == "pending":
        derivatives = []
    elif status == "inprogress":
        derivatives = [{"name": file_name(job), "hasThumbnail": "false", "status": "inprogress",
                        "progress": f"{percent}% complete", "outputType": t, "children": []} for t in types]
    elif status == "success":
        derivatives = [_successful_derivative(job, t) for t in types]
    else:
        messages = job.messages or ([TIMEOUT_MESSAGE] if status == "timeout" else [])
        derivatives = [{"name": file_name(job), "hasThumbnail": "false", "status": status,
                        "progress": "complete", "outputType": t, "messages": messages, "children": []}
                       for t in types]
    finished = status in ("success", "failed", "timeout")
    return {
        "type": "manifest",
        "hasThumbnail": "true" if has_thumbnail(job, now) else "false",
        "status": status,
        "progress": "complete" if finished else f"{percent}% complete",
        "region": job.region,
        "urn": job.urn,
        "version": "1.0",
        "derivatives": derivatives,
    }
