"""IDS documents: the bytes of an .ids file and its name, checked against buildingSMART's IDS schema once.

The pipeline reads them from the repository or S3 and hands the bytes to the worker; validating them here,
before any file is checked, turns a broken IDS into one clear error instead of a failure on every file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class IdsDocumentError(ValueError):
    """An IDS document that cannot be read or is not valid IDS; the message names it."""


@dataclass(frozen=True)
class IdsDocument:
    name: str  # shown in results and reports: a file name or an S3 URI
    data: bytes

    def __repr__(self) -> str:
        return f"IdsDocument({self.name!r}, {len(self.data)} bytes)"

    @classmethod
    def from_path(cls, path: str | Path) -> IdsDocument:
        file = Path(path)
        try:
            return cls(str(path), file.read_bytes())
        except OSError as exc:
            raise IdsDocumentError(f"{path}: cannot read the IDS file: {exc.strerror or exc}") from None

    def parse(self) -> Any:
        """The ifctester `Ids` of this document, validated against the IDS schema (else IdsDocumentError)."""
        from ifctester import ids  # the parser stack (IfcOpenShell) is loaded only where IDS is used

        try:
            # From a file object, not ids.from_string: that one validates an ElementTree, which has lost the
            # namespace prefixes, so every `base="xs:string"` of a restriction fails as an unknown QName.
            return ids.open(io.BytesIO(self.data), validate=True)
        except Exception as exc:  # xmlschema and ElementTree raise many kinds; all mean "not valid IDS"
            detail = getattr(exc, "xml_error", None) or exc
            first_line = str(detail).strip().splitlines()[0] if str(detail).strip() else type(exc).__name__
            raise IdsDocumentError(f"{self.name}: not a valid IDS document: {first_line}") from None

    def specification_names(self) -> list[str]:
        return [spec.name for spec in self.parse().specifications]
