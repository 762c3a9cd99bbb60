"""aps_landing: where ingest files land (an S3 bucket or a local folder), behind one small `Landing` protocol.

    from aps_landing import Landing, ObjectChanged        # the protocol and its types (no boto3)
    from aps_landing.s3 import S3Landing                  # S3Landing(boto3_s3_client, bucket)
    from aps_landing.local import LocalLanding            # LocalLanding("/data/landing")

Airflow-free and free of the pipeline: both `aps_pipeline` and the provider (`aps_provider`) use it. The S3
module is the only one that imports boto3/botocore.
"""

from aps_landing.base import (
    AccessRefused,
    ContentDigests,
    Landing,
    LandingError,
    ListedObject,
    ObjectChanged,
    ObjectGone,
    ObjectHead,
    UnsafeKey,
    digests_of,
    read_head,
    read_small,
    sha256_of,
)

__all__ = [
    "AccessRefused",
    "ContentDigests",
    "Landing",
    "LandingError",
    "ListedObject",
    "ObjectChanged",
    "ObjectGone",
    "ObjectHead",
    "UnsafeKey",
    "digests_of",
    "read_head",
    "read_small",
    "sha256_of",
]
