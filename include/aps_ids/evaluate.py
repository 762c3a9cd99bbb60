"""The check itself, in-process: open an IFC, validate it against IDS documents, turn ifctester's objects into
results. The worker (worker.py) runs it under limits; tests of the IDS test cases call it directly.

A file passes when every specification does (ifctester's own verdict per specification, which follows the
IDS rules: each requirement holds on each applicable element, a required specification applies to at least
one element, a prohibited one to none).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ifcopenshell
from ifctester import ids, reporter

from aps_ids.results import FailingElement, RequirementResult
from aps_ids.specs import IdsDocument

MAX_FAILURES = 1000  # failing elements kept per requirement (the count is always whole)
_PROHIBITED = "prohibited: no element may match the applicability"


class FailuresReport(reporter.Html):
    """ifctester's HTML report without the lists of passing elements: it is written for files that fail,
    and describing every passing element (its type, predefined type, ...) took half the report's time."""

    def report_passed_entities(self, requirement: Any) -> list[Any]:
        return []


def _element(entity: Any, reason: str) -> FailingElement:
    return FailingElement(
        global_id=getattr(entity, "GlobalId", None),
        ifc_class=entity.is_a(),
        name=getattr(entity, "Name", None),
        reason=reason,
    )


def _spec_results(spec: Any, index: int, source: str, max_failures: int) -> list[RequirementResult]:
    """The rows of one validated specification."""
    applicable = len(spec.applicable_entities)
    rows = []
    for facet in spec.requirements:
        failures = facet.failures
        rows.append(RequirementResult(
            ids=source, specification=spec.name, specification_index=index,
            requirement=facet.to_string("requirement", spec, facet), facet=type(facet).__name__,
            passed=bool(facet.status), applicable=applicable, failed=len(failures),
            failures=tuple(_element(f["element"], str(f["reason"])) for f in failures[:max_failures]),
        ))  # fmt: skip
    if not spec.status and all(row.passed for row in rows):
        # The specification fails on its cardinality alone, not on a requirement: say so in a row of its own.
        prohibited = spec.maxOccurs == 0
        failing = spec.applicable_entities if prohibited else []
        rows.append(RequirementResult(
            ids=source, specification=spec.name, specification_index=index, requirement=None, facet=None,
            passed=False, applicable=applicable, failed=len(failing),
            failures=tuple(_element(e, _PROHIBITED) for e in failing[:max_failures]),
        ))  # fmt: skip
    return rows


def evaluate(
    ifc_path: str | Path,
    documents: list[IdsDocument],
    *,
    max_failures: int = MAX_FAILURES,
    report_html: bool = False,
) -> tuple[tuple[RequirementResult, ...], bytes | None]:
    """Check one IFC file against the documents: (the results, ifctester's HTML report if asked for and the
    file fails)."""
    model = ifcopenshell.open(str(ifc_path))
    combined = ids.Ids(title=" + ".join(d.name for d in documents) or "IDS")
    sources: list[str] = []
    for document in documents:
        for spec in document.parse().specifications:
            combined.specifications.append(spec)
            sources.append(document.name)
    # One validation over all documents: the model's property caches are built once.
    combined.validate(model)
    results: list[RequirementResult] = []
    for index, (spec, source) in enumerate(zip(combined.specifications, sources, strict=True)):
        results.extend(_spec_results(spec, index, source, max_failures))
    report = None
    if report_html and not all(r.passed for r in results):  # a report is for a file that fails
        html = FailuresReport(combined)
        html.report()
        report = html.to_string().encode("utf-8")
    return tuple(results), report
