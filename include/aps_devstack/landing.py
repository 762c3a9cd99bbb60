"""Put a file into the landing bucket the way the pipeline wants it: the file plus its metadata sidecar.

    put_file(s3_client, Path("model.ifc"), bucket="aps-landing", prefix="incoming/",
             metadata={"project": "tower-b", "discipline": "structural"})
    # -> "incoming/model.ifc"; "incoming/model.ifc.meta.json" holds the metadata

The metadata is checked with the pipeline's own rules first, so a mistake shows here and not as a rejection
an hour later. The sidecar goes up before the file: a run that sees the file also sees its metadata.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aps_pipeline.metadata import SIDECAR_SUFFIX, FileMetadata


def put_file(s3_client: Any, path: Path, *, bucket: str, prefix: str, metadata: dict[str, Any]) -> str:
    """Upload `path` (multipart when large) under `prefix`, beside its sidecar; returns the file's key."""
    document = FileMetadata.model_validate(metadata).model_dump(mode="json", exclude_none=True)
    if not document.get("tags"):
        document.pop("tags", None)
    key = f"{prefix}{path.name}"
    s3_client.put_object(Bucket=bucket, Key=key + SIDECAR_SUFFIX, Body=json.dumps(document).encode(),
                         ContentType="application/json")
    s3_client.upload_file(str(path), bucket, key)
    return key
