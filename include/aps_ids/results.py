"""The results of an IDS check as plain data: what the worker writes, the pipeline stores and the API serves.

One `RequirementResult` per requirement of each specification (and one with `requirement=None` when a
specification fails on its own cardinality: required but nothing applies, prohibited but something does).
Everything round-trips through JSON (`as_dict` / `from_dict`), which is how it crosses the process boundary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

IdsStatus = Literal["passed", "failed", "did_not_finish"]
# The reason text of a file whose check gave no verdict starts with this, whatever the cause.
DID_NOT_FINISH = "IDS check did not finish"
SUMMARY_CHARS = 600  # a verdict's one-line reason is cut here; the rows hold everything


@dataclass(frozen=True)
class FailingElement:
    """An element that fails a requirement, and ifctester's reason."""

    global_id: str | None
    ifc_class: str
    name: str | None
    reason: str


@dataclass(frozen=True)
class RequirementResult:
    ids: str  # the IDS document's name (file name or URI)
    specification: str
    specification_index: int  # position across the file's IDS documents, from 0
    requirement: str | None  # the facet in words; None for the specification's own cardinality
    facet: str | None  # Entity, Attribute, Property, Classification, Material, PartOf
    passed: bool
    applicable: int  # elements the specification applies to
    failed: int  # elements that fail (all of them, even past `failures`' cap)
    failures: tuple[FailingElement, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequirementResult:
        failures = tuple(FailingElement(**f) for f in data.get("failures", ()))
        return cls(**{**data, "failures": failures})


@dataclass(frozen=True)
class IdsVerdict:
    """One file's verdict over all the IDS documents it was checked against."""

    status: IdsStatus
    reason: str  # one line: what failed, or why the check did not finish; "" when it passed
    requirements: tuple[RequirementResult, ...] = ()
    seconds: float = 0.0
    report_html: bytes | None = field(default=None, repr=False)  # ifctester's HTML report, when asked for

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def failing(self) -> tuple[RequirementResult, ...]:
        return tuple(r for r in self.requirements if not r.passed)


def verdict_of(requirements: tuple[RequirementResult, ...]) -> IdsStatus:
    """The file's status from its rows: it passes when every specification does (each row passed)."""
    return "passed" if all(r.passed for r in requirements) else "failed"


def summarize(requirements: tuple[RequirementResult, ...]) -> str:
    """The reason line of a failed verdict: which specifications fail, and how many elements each."""
    failing = [r for r in requirements if not r.passed]
    if not failing:
        return ""
    specifications = {r.specification_index for r in requirements}
    by_spec: dict[int, list[RequirementResult]] = {}
    for result in failing:
        by_spec.setdefault(result.specification_index, []).append(result)
    parts = []
    for results in by_spec.values():
        first = results[0]
        elements = max(r.failed for r in results)
        if elements:
            plural = "" if elements == 1 else "s"
            parts.append(f"'{first.specification}' ({elements} failing element{plural})")
        elif first.applicable == 0:
            parts.append(f"'{first.specification}' (required, but no element applies)")
        else:
            parts.append(f"'{first.specification}'")
    text = f"{len(by_spec)} of {len(specifications)} specifications failed: " + "; ".join(parts)
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"
