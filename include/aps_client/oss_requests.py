"""OSS requests (aps-api.md §2.2-2.7): paths, region headers and request flows, with no client around them.

Both the OSS clients (oss.py) and the multipart upload (upload.py) build on these, so neither imports the
other's module. Region travels as the `x-ads-region` header, the form OSS documents for bucket creation
(and harmless on the other OSS calls, where bucket keys are global anyway).
"""

from __future__ import annotations

from urllib.parse import quote

from aps_client.errors import APSForbiddenError
from aps_client.models import Bucket, ObjectDetails
from aps_client.transport import Flow, RequestSpec, error_from_response

BUCKET_POLICIES = ("transient", "temporary", "persistent")


def region_headers(region: str) -> dict[str, str]:
    return {"x-ads-region": region.upper()}


def bucket_path(bucket_key: str) -> str:
    return f"/oss/v2/buckets/{quote(bucket_key, safe='')}"


def object_path(bucket_key: str, object_key: str) -> str:
    # Object keys may contain '/', which must be percent-encoded in the path (aps-api.md §1).
    return f"{bucket_path(bucket_key)}/objects/{quote(object_key, safe='')}"


def _other_owner(bucket_key: str, error: Exception) -> APSForbiddenError:
    return APSForbiddenError(
        f"bucket {bucket_key!r} exists but this application may not use it (bucket keys are global across "
        f"all APS applications; it probably belongs to another one): pick another bucket key",
        status_code=getattr(error, "status_code", 403),
        body=getattr(error, "body", None),
        request_id=getattr(error, "request_id", None),
        method=getattr(error, "method", None),
        url=getattr(error, "url", None),
    )


def bucket_details_flow(bucket_key: str, region: str) -> Flow[Bucket]:
    response = yield RequestSpec(
        "GET",
        f"{bucket_path(bucket_key)}/details",
        family="oss",
        headers=region_headers(region),
        accept=frozenset({403}),
    )
    if response.status_code == 403:
        raise _other_owner(bucket_key, error_from_response(response))
    return Bucket.model_validate(response.json())


def ensure_bucket_flow(bucket_key: str, policy: str, region: str) -> Flow[Bucket]:
    """Create the bucket; 409 means it exists already, so read its details (403 there: not ours)."""
    if policy not in BUCKET_POLICIES:
        raise ValueError(f"bucket policy must be one of {BUCKET_POLICIES}, got {policy!r}")
    response = yield RequestSpec(
        "POST",
        "/oss/v2/buckets",
        family="oss",
        headers=region_headers(region),
        json={"bucketKey": bucket_key, "policyKey": policy},
        accept=frozenset({409}),
    )
    if response.status_code == 409:
        return (yield from bucket_details_flow(bucket_key, region))
    return Bucket.model_validate(response.json())


def delete_object_flow(bucket_key: str, object_key: str, region: str) -> Flow[None]:
    """DELETE the object (OSS delete_object, scope data:write); an absent one raises APSNotFoundError."""
    yield RequestSpec("DELETE", object_path(bucket_key, object_key), family="oss",
                      headers=region_headers(region))


def object_details_flow(bucket_key: str, object_key: str, region: str) -> Flow[ObjectDetails]:
    response = yield RequestSpec(
        "GET", f"{object_path(bucket_key, object_key)}/details", family="oss", headers=region_headers(region)
    )
    return ObjectDetails.model_validate(response.json())
