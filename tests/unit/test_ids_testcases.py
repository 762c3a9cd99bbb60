"""buildingSMART's own IDS test cases (tests/fixtures/ids/, see its README): for each pair, the pipeline's
verdict on the IFC file is the one its name gives, `pass-…` or `fail-…`.

The verdict is the one the pipeline's worker computes (aps_ids.evaluate, and aps_ids.results.verdict_of for
the file's status), called in-process here so 239 cases take seconds; test_ids_runner.py shows the worker
process gives the same verdicts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aps_ids.evaluate import evaluate
from aps_ids.results import verdict_of
from aps_ids.specs import IdsDocument

CASES_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "ids"
FACETS = ("entity", "attribute", "property", "classification", "material", "partof", "restriction")
CASES = sorted(CASES_DIR.glob("*/*.ids"))


def test_the_cases_cover_every_facet_with_passing_and_failing_files() -> None:
    assert len(CASES) >= 40
    for facet in FACETS:
        names = [c.name for c in CASES if c.parent.name == facet]
        assert any(n.startswith("pass-") for n in names), facet
        assert any(n.startswith("fail-") for n in names), facet
    assert (CASES_DIR / "LICENSE").read_text(encoding="utf-8").count("Creative Commons") == 1


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_verdict_matches_the_case_name(case: Path) -> None:
    expected = case.name.split("-", 1)[0]
    assert expected in ("pass", "fail")
    results, _report = evaluate(case.with_suffix(".ifc"), [IdsDocument.from_path(case)])
    assert verdict_of(results) == ("passed" if expected == "pass" else "failed")
