"""Per-file checks, as pure functions of what we know about an object (no S3, no database, no APS).

Each returns a CheckResult; the validation step runs them all, stores every result, and rejects the file
with the first failure's message. Check names are stable strings (they appear in the registry, in
quarantine reason files and in aps_samples' expectations).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

CHECK_KEY = "key"
CHECK_EXTENSION = "extension"
CHECK_SIZE = "size"
CHECK_MAGIC = "magic"
CHECK_METADATA = "metadata"

MAX_KEY_BYTES = 1024  # S3's own limit on key length
HEAD_BYTES = 4096  # how much of an object the magic-bytes check reads (one ranged GET)


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def stored_details(self) -> dict[str, Any]:
        """What the registry keeps beside the name and verdict: the details, and the message if any."""
        return {"message": self.message, **self.details} if self.message else dict(self.details)


def passed(name: str, message: str = "", **details: Any) -> CheckResult:
    return CheckResult(name, True, message, details)


def failed(name: str, message: str, **details: Any) -> CheckResult:
    return CheckResult(name, False, message, details)


# --- safe key ----------------------------------------------------------------------------------------


def check_key(key: str) -> CheckResult:
    """A key we can safely copy, name and pass on: no traversal, no control characters, not too long."""
    if not key:
        return failed(CHECK_KEY, "empty key")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        return failed(CHECK_KEY, f"key is longer than {MAX_KEY_BYTES} bytes")
    controls = sorted({f"U+{ord(c):04X}" for c in key if unicodedata.category(c) in ("Cc", "Cf", "Cs")})
    if controls:
        return failed(CHECK_KEY, f"key contains control or invisible characters ({', '.join(controls)})")
    if key.startswith("/"):
        return failed(CHECK_KEY, "key starts with '/'")
    if "\\" in key:
        return failed(CHECK_KEY, "key contains a backslash")
    segments = key.split("/")
    if any(segment in (".", "..") for segment in segments):
        return failed(CHECK_KEY, "key contains a '.' or '..' path segment")
    if any(segment == "" for segment in segments[:-1]):
        return failed(CHECK_KEY, "key contains an empty path segment ('//')")
    return passed(CHECK_KEY)


# --- extension ---------------------------------------------------------------------------------------


def file_name(key: str) -> str:
    return key.rsplit("/", 1)[-1]


# Creo and NX number saved versions after the extension (`bracket.prt.3`, `top.asm.12`).
_VERSIONED_NAME = re.compile(r"\.([A-Za-z][A-Za-z0-9_]*)\.\d+$")


def extension_of(key: str) -> str:
    """The translator's extension of the key's last segment: lower case, without the dot ('' if none).

    A version number after an extension (`bracket.prt.3`) is not the extension: APS translates that file as
    `.prt`, and the content-addressed object key must keep `.prt` for APS to pick the translator.
    """
    name = file_name(key)
    versioned = _VERSIONED_NAME.search(name)
    if versioned:
        return versioned.group(1).lower()
    return name.rsplit(".", 1)[1].lower() if "." in name.strip(".") else ""


@dataclass(frozen=True)
class SupportedInputs:
    """The source extensions APS translates, from GET .../formats (`{output type: [source extensions]}`).

    Most entries are plain extensions; a few are regular expressions over the file name (e.g. `prt\\.\\d+$`
    for versioned NX/Creo files such as `part.prt.3`).
    """

    extensions: frozenset[str]
    patterns: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def from_formats(cls, formats: Mapping[str, Iterable[str]]) -> SupportedInputs:
        extensions: set[str] = set()
        patterns: dict[str, re.Pattern[str]] = {}
        for sources in formats.values():
            for entry in sources:
                entry = entry.strip().lower()
                if re.fullmatch(r"[a-z0-9_]+", entry):
                    extensions.add(entry)
                elif entry and entry not in patterns:
                    try:
                        patterns[entry] = re.compile(entry)
                    except re.error:
                        continue  # an entry we cannot read is one extension less, not a broken pipeline
        return cls(frozenset(extensions), tuple(patterns.values()))

    def accepts(self, key: str) -> bool:
        name = file_name(key).lower()
        return extension_of(key) in self.extensions or any(p.search(name) for p in self.patterns)


def check_extension(
    key: str, supported: SupportedInputs, allowed: Iterable[str] | None = None
) -> CheckResult:
    """The file's extension is among APS's inputs and, if the pipeline narrows them, among `allowed`."""
    extension = extension_of(key)
    if not supported.accepts(key):
        shown = f"'.{extension}'" if extension else "no extension"
        return failed(CHECK_EXTENSION, f"{shown} is not an input APS can translate", extension=extension)
    if allowed is not None and extension not in {a.lower().lstrip(".") for a in allowed}:
        return failed(
            CHECK_EXTENSION,
            f"'.{extension}' is not among this pipeline's allowed_extensions",
            extension=extension,
        )
    return passed(CHECK_EXTENSION, extension=extension)


# --- size --------------------------------------------------------------------------------------------


def check_size(size: int, max_size: int) -> CheckResult:
    if size <= 0:
        return failed(CHECK_SIZE, "file is empty (0 bytes)", size=size)
    if size > max_size:
        return failed(CHECK_SIZE, f"file is {size} bytes, more than the maximum of {max_size}", size=size)
    return passed(CHECK_SIZE, size=size)


def listing_checks(
    key: str, size: int, supported: SupportedInputs, allowed: Iterable[str] | None, max_size: int
) -> list[CheckResult]:
    """The checks of what the listing tells about an object, before any byte is read. A new rule of this
    kind is one more entry here (rules on bytes: `_MAGIC_CHECKS`; on metadata: aps_pipeline.metadata)."""
    return [check_key(key), check_extension(key, supported, allowed), check_size(size, max_size)]


# --- magic bytes -------------------------------------------------------------------------------------

OLE_SIGNATURE = bytes.fromhex("D0CF11E0A1B11AE1")  # Microsoft compound file (Revit, Navisworks)
STEP_SIGNATURE = b"ISO-10303-21;"
ZIP_SIGNATURE = b"PK\x03\x04"
_DWG_VERSION = re.compile(rb"^AC(?:10\d\d|[12]\.\d\d)")  # AC1032 (2018), AC1.50 (R2.05), ...
_UTF8_BOM = b"\xef\xbb\xbf"

# OBJ records (Wavefront spec): anything else on a line means the text is not OBJ.
# fmt: off
_OBJ_KEYWORDS = frozenset((
    "v", "vt", "vn", "vp", "f", "l", "p", "o", "g", "s", "mtllib", "usemtl", "cstype", "deg", "bmat", "step",
    "curv", "curv2", "surf", "parm", "trim", "hole", "scrv", "sp", "end", "con", "mg", "lod", "usemap",
    "maplib", "shadow_obj", "trace_obj", "ctech", "stech", "bevel", "c_interp", "d_interp", "call", "csh",
))
# fmt: on


def _step(head: bytes) -> str | None:
    body = head.removeprefix(_UTF8_BOM).lstrip()
    return None if body.startswith(STEP_SIGNATURE) else "does not start with the STEP header 'ISO-10303-21;'"


def _ole(head: bytes) -> str | None:
    return None if head.startswith(OLE_SIGNATURE) else "is not an OLE compound file (D0 CF 11 E0 A1 B1 1A E1)"


def _dwg(head: bytes) -> str | None:
    return None if _DWG_VERSION.match(head) else "does not start with a DWG version string (AC10xx)"


def _zip(head: bytes) -> str | None:
    return None if head.startswith(ZIP_SIGNATURE) else "is not a ZIP archive (PK 03 04)"


def _obj(head: bytes) -> str | None:
    if b"\x00" in head:
        return "contains NUL bytes: binary data, not OBJ text"
    text = head.removeprefix(_UTF8_BOM).decode("utf-8", errors="replace")
    if "\ufffd" in text.rstrip("\ufffd"):  # a multi-byte character cut at the end of the head is fine
        return "is not UTF-8 text"
    lines = text.splitlines()
    if len(head) >= HEAD_BYTES and lines:
        lines = lines[:-1]  # the last line may be cut by the ranged read
    records = 0
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword = stripped.split(None, 1)[0]
        if keyword not in _OBJ_KEYWORDS:
            return f"line {number} starts with {keyword[:20]!r}, not an OBJ record"
        records += 1
    return None if records else "has no OBJ records (v, f, o, g, ...) in its first bytes"


_MAGIC_CHECKS = {
    "ifc": _step,
    "step": _step,
    "stp": _step,
    "rvt": _ole,
    "rfa": _ole,
    "rte": _ole,
    "nwd": _ole,
    "dwg": _dwg,
    "dwt": _dwg,
    "zip": _zip,
    "ifczip": _zip,
    "obj": _obj,
}


def check_magic(extension: str, head: bytes) -> CheckResult:
    """The first bytes agree with the extension, for the formats where that is knowable."""
    probe = _MAGIC_CHECKS.get(extension.lower())
    if probe is None:
        return passed(CHECK_MAGIC, f"no signature known for '.{extension}'", checked=False)
    problem = probe(head)
    if problem:
        return failed(CHECK_MAGIC, f"'.{extension}' file {problem}", checked=True, head=head[:16].hex(" "))
    return passed(CHECK_MAGIC, checked=True)
