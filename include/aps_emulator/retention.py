"""OSS retention: what a bucket's policy does to its objects (aps-api.md: `transient` objects live 24 hours,
`temporary` ones 30 days, `persistent` ones until deleted).

    drop_expired_objects(context)   # before any route reads an object

An object's life starts at its last upload (`modified_ms`), on the emulator's clock, so a test makes a day
pass with POST /_emulator/clock and shortens the retention with `transient_retention_seconds` /
`temporary_retention_seconds`. Expired objects are removed with their bytes, as OSS deletes them.
"""

from __future__ import annotations

from aps_emulator.context import EmulatorContext
from aps_emulator.settings import Tunables


def retention_seconds(policy_key: str, tunables: Tunables) -> float | None:
    """How long an object of a bucket with this policy lives; None for ever."""
    return {"transient": tunables.transient_retention_seconds,
            "temporary": tunables.temporary_retention_seconds}.get(policy_key)


def drop_expired_objects(context: EmulatorContext) -> int:
    """Remove every object its bucket's policy has let expire; how many."""
    store, now_ms = context.store, context.clock.now_ms()
    with store.lock:
        state = store.state
        expired = []
        for ref, record in state.objects.items():
            bucket = state.buckets.get(record.bucket_key)
            life = retention_seconds(bucket.policy_key, context.tunables) if bucket else None
            if life is not None and now_ms - record.modified_ms >= life * 1000:
                expired.append(ref)
        blobs = [state.objects.pop(ref).blob for ref in expired]
        if expired:
            store.mark_dirty()
    for blob in blobs:
        store.blob_path(blob).unlink(missing_ok=True)
    return len(expired)
