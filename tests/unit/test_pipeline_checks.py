"""Per-file checks: safe keys, extensions against APS formats, sizes, magic bytes; and the sidecar model."""

from __future__ import annotations

import json

import pytest

from aps_pipeline.checks import (
    HEAD_BYTES,
    OLE_SIGNATURE,
    SupportedInputs,
    check_extension,
    check_key,
    check_magic,
    check_size,
    extension_of,
)
from aps_pipeline.metadata import (
    ERROR_KEY,
    SOURCE_KEY,
    FileMetadata,
    MetadataError,
    read_sidecar_document,
    validate_metadata,
)
from aps_samples import generate_ifc, generate_obj

FORMATS = {
    "svf2": ["ifc", "rvt", "dwg", "nwd", "obj", "step", "prt\\.\\d+$", "zip"],
    "thumbnail": ["ifc", "rvt"],
    "ifc": ["rvt"],
}


@pytest.mark.parametrize(
    "key",
    ["incoming/a.ifc", "a.ifc", "deep/er/x y (1).rvt", "ünïcode/plan.dwg", "dots/v1.2.ifc", "x/..a.ifc"],
)
def test_safe_keys(key: str) -> None:
    assert check_key(key).passed


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("", "empty"),
        ("in/../etc/passwd.ifc", "'..'"),
        ("in/./a.ifc", "'.'"),
        ("/abs/a.ifc", "starts with '/'"),
        ("in//a.ifc", "empty path segment"),
        ("in/bell\x07.obj", "U+0007"),
        ("in/tab\there.ifc", "U+0009"),
        ("in/zero\u200bwidth.ifc", "U+200B"),
        ("in\\win.ifc", "backslash"),
        ("a/" * 600 + "x.ifc", "longer than 1024"),
    ],
)
def test_unsafe_keys(key: str, why: str) -> None:
    result = check_key(key)
    assert not result.passed
    assert why in result.message


def test_extension_from_formats_dict() -> None:
    supported = SupportedInputs.from_formats(FORMATS)
    assert check_extension("in/House.IFC", supported).passed
    assert check_extension("in/part.prt.3", supported).passed  # regex entry
    result = check_extension("in/notes.xyz", supported)
    assert not result.passed
    assert "'.xyz' is not an input APS can translate" in result.message
    assert not check_extension("in/README", supported).passed
    narrowed = check_extension("in/a.rvt", supported, allowed=["ifc", "obj"])
    assert not narrowed.passed
    assert "allowed_extensions" in narrowed.message
    assert check_extension("in/a.obj", supported, allowed=["ifc", ".OBJ"]).passed


def test_extension_of() -> None:
    assert extension_of("a/b/c.tar.GZ") == "gz"
    assert extension_of("a/b.d/c") == ""
    assert extension_of("a/.hidden") == ""


def test_size_bounds() -> None:
    assert check_size(1, 10).passed
    assert check_size(10, 10).passed
    assert "empty" in check_size(0, 10).message
    assert "more than the maximum of 10" in check_size(11, 10).message


def test_magic_ifc_and_step() -> None:
    ifc = generate_ifc(1).data[:HEAD_BYTES]
    assert check_magic("ifc", ifc).passed
    assert check_magic("step", ifc).passed
    assert check_magic("ifc", b"\xef\xbb\xbf\n" + ifc).passed  # BOM and blank line tolerated
    bad = check_magic("ifc", b"HEADER;\nFILE_DESCRIPTION")
    assert not bad.passed
    assert "ISO-10303-21;" in bad.message


def test_magic_ole_dwg_zip() -> None:
    assert check_magic("rvt", OLE_SIGNATURE + b"\x00" * 100).passed
    assert check_magic("nwd", OLE_SIGNATURE).passed
    assert not check_magic("rvt", b"PK\x03\x04....").passed
    assert check_magic("dwg", b"AC1032\x00\x00").passed
    assert check_magic("dwg", b"AC1015").passed
    assert not check_magic("dwg", b"ISO-10303-21;").passed
    assert check_magic("zip", b"PK\x03\x04rest").passed


def test_magic_obj_text() -> None:
    assert check_magic("obj", generate_obj(3).data).passed
    junk = check_magic("obj", b"\x00\xff\x10binary")
    assert not junk.passed
    assert "binary" in junk.message
    prose = check_magic("obj", b"# comment\nhello world\n")
    assert not prose.passed
    assert "line 2" in prose.message
    assert not check_magic("obj", b"# only comments\n\n").passed
    # A head cut in the middle of a line (ranged read) is still OBJ.
    big = (b"v 1.0 2.0 3.0\n" * 400)[:HEAD_BYTES]
    assert check_magic("obj", big[:-3] + b"\xe2\x82").passed


def test_magic_unknown_format_is_not_judged() -> None:
    result = check_magic("3dm", b"anything")
    assert result.passed
    assert result.details == {"checked": False}


# --- metadata -----------------------------------------------------------------------------------------


def test_metadata_model_accepts_extras_and_splits_tags() -> None:
    meta = FileMetadata.model_validate({"project": " p1 ", "tags": "a, b,,c", "phase": "design", "n": 3})
    assert meta.project == "p1"
    assert meta.tags == ["a", "b", "c"]
    assert meta.model_extra == {"phase": "design", "n": 3}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"discipline": "arch"}, "project: Field required"),
        ({"project": ""}, "project: String should have at least 1 character"),
        ({"project": "p", "nested": {"a": 1}}, "extra field 'nested' must be a string"),
        ({"project": "p", "9bad": "x"}, "extra field name '9bad'"),
        ({"project": "p", "big": "x" * 9000}, "larger than"),
        ({ERROR_KEY: "sidecar is not valid JSON"}, "sidecar is not valid JSON"),
        ({SOURCE_KEY: "none"}, "no metadata"),
    ],
)
def test_metadata_errors(document: dict, message: str) -> None:
    with pytest.raises(MetadataError, match=message):
        validate_metadata(document)


def test_metadata_ignores_pipeline_annotations() -> None:
    meta = validate_metadata({"project": "p", SOURCE_KEY: "s3"})
    assert meta.model_extra == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"project": ', "not valid JSON"),
        (b"[1, 2]", "must hold a JSON object, found list"),
        (b"\xff\xfe", "not UTF-8"),
        (b"{}" + b" " * 70_000, "larger than"),
    ],
)
def test_sidecar_documents(raw: bytes, message: str) -> None:
    with pytest.raises(MetadataError, match=message):
        read_sidecar_document(raw)
    assert read_sidecar_document(json.dumps({"project": "x"}).encode()) == {"project": "x"}


def test_versioned_cad_names_keep_the_translators_extension() -> None:
    """Creo/NX save `bracket.prt.3`: the translator's extension is `prt`, and so is the APS object key's."""
    from aps_pipeline.dedupe import object_key_for

    supported = SupportedInputs.from_formats({"svf2": ["prt", "asm", "ifc", r"prt\.\d+$", r"asm\.\d+$"]})
    assert extension_of("cad/bracket.prt.3") == "prt"
    assert extension_of("cad/TOP.ASM.12") == "asm"
    assert object_key_for("ab" * 32, "cad/bracket.prt.3") == f"{'ab' * 32}.prt"
    assert check_extension("cad/bracket.prt.3", supported, allowed=["prt"]).passed
    # A number alone is no translator's extension: rejected up front, with the reason.
    bare = check_extension("cad/report.3", supported)
    assert not bare.passed
    assert "'.3' is not an input APS can translate" in bare.message
    assert extension_of("a/b/archive.tar.gz") == "gz"
