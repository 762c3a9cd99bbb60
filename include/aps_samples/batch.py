"""A mixed landing batch for demos and tests: valid IFC and OBJ files, a duplicate, and bad files.

`sample_batch(seed)` lists what to put in the landing and what the pipeline should make of each file;
`put_sample_batch(landing, prefix)` puts it there (any aps_landing.Landing: a bucket or a folder). Outcomes
name the validation check that rejects a file, so tests can compare the pipeline's reasons with the
expectations here:

    valid            a valid file (a `duplicate_of` one carries the same bytes as an earlier key)
    rejected/<check> rejected by that check: extension, size, magic, key, metadata
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, NamedTuple

from aps_landing import Landing, UnsafeKey
from aps_samples.ifc import generate_ifc
from aps_samples.obj import generate_obj

SIDECAR_SUFFIX = ".meta.json"


@dataclass(frozen=True)
class Expected:
    """What the pipeline should make of one sample file."""

    outcome: str  # "valid" or "rejected"
    check: str | None = None  # the failing check for a rejected file
    duplicate_of: str | None = None  # key of the earlier file with identical bytes

    @property
    def valid(self) -> bool:
        return self.outcome == "valid"


VALID = Expected("valid")


def rejected(check: str) -> Expected:
    return Expected("rejected", check)


class SampleFile(NamedTuple):
    """One landing object: its key (relative to the prefix), bytes, sidecar metadata and expected outcome.

    `metadata` is a dict (written as valid JSON), raw bytes (written verbatim, e.g. broken JSON) or None (no
    sidecar).
    """

    key: str
    data: bytes
    metadata: dict[str, Any] | bytes | None
    expected: Expected


def sample_metadata(seed: int, index: int, *, discipline: str = "architecture") -> dict[str, Any]:
    rng = random.Random(seed * 1000 + index)
    return {
        "project": f"project-{seed}",
        "discipline": discipline,
        "author": rng.choice(["ana", "bo", "chen", "dee"]),
        "revision": f"R{rng.randint(1, 9)}",
        "tags": ["sample"],
    }


def sample_batch(seed: int = 1) -> list[SampleFile]:
    """A deterministic mixed batch: 3 valid IFC, 2 valid OBJ, 1 duplicate, 7 bad files."""
    ifc = [generate_ifc(seed * 10 + i, name=f"building-{i}") for i in range(1, 4)]
    obj = [generate_obj(seed * 10 + i, name=f"part-{i}") for i in range(1, 3)]
    junk = random.Random(seed).randbytes(2048)
    junk = b"\x00\xff" + junk  # binary from its first byte, whatever the seed
    files = [
        SampleFile("ifc/building-1.ifc", ifc[0].data, sample_metadata(seed, 1), VALID),
        SampleFile("ifc/building-2.ifc", ifc[1].data, sample_metadata(seed, 2), VALID),
        # No sidecar: its metadata travels as S3 user metadata (see put_sample_batch).
        SampleFile("ifc/building-3.ifc", ifc[2].data, None, VALID),
        SampleFile("obj/part-1.obj", obj[0].data, sample_metadata(seed, 4, discipline="mechanical"), VALID),
        SampleFile("obj/part-2.obj", obj[1].data, sample_metadata(seed, 5, discipline="mechanical"), VALID),
        SampleFile(
            "copies/building-1-copy.ifc",
            ifc[0].data,
            sample_metadata(seed, 6),
            Expected("valid", duplicate_of="ifc/building-1.ifc"),
        ),
        SampleFile("bad/empty.ifc", b"", sample_metadata(seed, 7), rejected("size")),
        SampleFile(
            "bad/no-header.ifc", ifc[0].data.split(b"\n", 1)[1], sample_metadata(seed, 8), rejected("magic")
        ),
        SampleFile("bad/junk.obj", junk, sample_metadata(seed, 9), rejected("magic")),
        SampleFile("bad/notes.xyz", b"just some text\n", sample_metadata(seed, 10), rejected("extension")),
        SampleFile("bad/a/../escape.ifc", ifc[1].data, sample_metadata(seed, 11), rejected("key")),
        SampleFile("bad/ctrl\x07char.obj", obj[0].data, sample_metadata(seed, 12), rejected("key")),
        SampleFile(
            "bad/broken-meta.ifc", ifc[2].data, b'{"project": "p", "revision": ', rejected("metadata")
        ),
    ]
    return files


def user_metadata(metadata: dict[str, Any]) -> dict[str, str]:
    """S3 user metadata is flat strings: lists become comma-separated values."""
    return {k: ",".join(v) if isinstance(v, list) else str(v) for k, v in metadata.items()}


def put_sample_batch(landing: Landing, prefix: str, seed: int = 1) -> list[SampleFile]:
    """Put `sample_batch(seed)` under `prefix`, sidecars beside their files; returns what was put, full keys.

    The valid file without a sidecar gets its metadata as user metadata instead. A key the landing cannot
    hold (a local folder refuses a '..' segment) is left out, of the landing and of the returned list.
    """
    prefix = prefix.strip("/")
    placed: list[SampleFile] = []
    for index, sample in enumerate(sample_batch(seed)):
        key = f"{prefix}/{sample.key}" if prefix else sample.key
        metadata = user_metadata(sample_metadata(seed, 100 + index)) if sample.metadata is None else None
        try:
            landing.put(key, sample.data, metadata=metadata)
        except UnsafeKey:
            continue
        if isinstance(sample.metadata, dict):
            body = json.dumps(sample.metadata, indent=2).encode()
            landing.put(key + SIDECAR_SUFFIX, body, content_type="application/json")
        elif isinstance(sample.metadata, bytes):
            landing.put(key + SIDECAR_SUFFIX, sample.metadata)
        duplicate_of = sample.expected.duplicate_of
        expected = sample.expected
        if duplicate_of is not None:
            full = f"{prefix}/{duplicate_of}" if prefix else duplicate_of
            expected = Expected(expected.outcome, expected.check, full)
        placed.append(SampleFile(key, sample.data, sample.metadata, expected))
    return placed
