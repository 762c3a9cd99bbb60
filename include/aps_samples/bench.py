"""N distinct valid files of about a target size, for benchmarks (bench/e2e.py and friends).

Sizes are reached by adding elements (IFC) or boxes (OBJ), so every file stays valid and is parsed by the
emulator like a real one; each file has its own seed, so no two files share content (no dedupe).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aps_samples.batch import sample_metadata, user_metadata
from aps_samples.ifc import generate_ifc
from aps_samples.obj import generate_obj


def ifc_of_size(seed: int, target_bytes: int, *, name: str = "bench") -> bytes:
    """A valid IFC file of at least about `target_bytes` (within one element's size, ~1.5 kB)."""
    small = len(generate_ifc(seed, name=name, walls=1, doors=0, windows=0).data)
    per_wall = len(generate_ifc(seed, name=name, walls=2, doors=0, windows=0).data) - small
    walls = max(1, 1 + -(-(target_bytes - small) // per_wall))
    return generate_ifc(seed, name=name, walls=walls, doors=0, windows=0).data


def obj_of_size(seed: int, target_bytes: int, *, name: str = "bench") -> bytes:
    """A valid OBJ file of at least about `target_bytes`."""
    one = len(generate_obj(seed, name=name, objects=1).data)
    per_object = len(generate_obj(seed, name=name, objects=2).data) - one
    objects = max(1, 1 + -(-(target_bytes - one) // per_object))
    return generate_obj(seed, name=name, objects=objects).data


def benchmark_files(
    count: int, target_bytes: int, *, seed: int = 0, kind: str = "ifc"
) -> Iterator[tuple[str, bytes]]:
    """(relative key, bytes) for `count` distinct files of about `target_bytes` each."""
    make = {"ifc": ifc_of_size, "obj": obj_of_size}[kind]
    for index in range(count):
        name = f"bench-{index:05d}"
        yield f"{name}.{kind}", make(seed * 1_000_003 + index, target_bytes, name=name)


def put_benchmark_files(
    s3_client: Any,
    bucket: str,
    prefix: str,
    count: int,
    target_bytes: int,
    *,
    seed: int = 0,
    kind: str = "ifc",
) -> list[str]:
    """Put `benchmark_files(...)` under `prefix`, with S3 user metadata; returns the keys."""
    keys = []
    for index, (key, data) in enumerate(benchmark_files(count, target_bytes, seed=seed, kind=kind)):
        full_key = f"{prefix.strip('/')}/{key}" if prefix.strip("/") else key
        metadata = user_metadata(sample_metadata(seed, index))
        s3_client.put_object(Bucket=bucket, Key=full_key, Body=data, Metadata=metadata)
        keys.append(full_key)
    return keys
