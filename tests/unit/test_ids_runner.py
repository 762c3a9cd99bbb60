"""The IDS check in its worker process: verdicts, the HTML report, the time limit and memory ceiling, an
unreadable file; and `aps-pipeline ids check` over it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aps_ids import IdsDocument, IdsDocumentError, Limits, check_ifc
from aps_ids.cli import main
from aps_ids.results import DID_NOT_FINISH
from aps_samples import generate_ifc
from aps_samples.ids import fire_rating_ids

CASES_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "ids"
FAILING_CASE = CASES_DIR / "property" / "fail-a_logical_unknown_is_considered_false_and_will_not_pass.ids"
PASSING_CASE = CASES_DIR / "entity" / "pass-a_matching_entity_should_pass.ids"


@pytest.fixture
def models(tmp_path: Path) -> dict[str, Path]:
    """Two generated models: all walls rated EI60 or better (seed 2), one wall EI30 (seed 3)."""
    paths = {}
    for label, seed in (("passing", 2), ("failing", 3)):
        path = tmp_path / f"{label}.ifc"
        path.write_bytes(generate_ifc(seed, name=label, walls=3, doors=1, windows=1).data)
        paths[label] = path
    spec = tmp_path / "fire.ids"
    spec.write_bytes(fire_rating_ids())
    paths["ids"] = spec
    return paths


def test_worker_gives_the_test_cases_verdicts() -> None:
    for case, status in ((PASSING_CASE, "passed"), (FAILING_CASE, "failed")):
        verdict = check_ifc(case.with_suffix(".ifc"), [IdsDocument.from_path(case)])
        assert verdict.status == status, (case.name, verdict.reason)


def test_failing_model_lists_its_failing_elements_and_gets_a_report(models: dict[str, Path]) -> None:
    failing_wall = generate_ifc(3, name="failing", walls=3, doors=1, windows=1).elements[2]
    assert failing_wall.properties["FireRating"] == "EI30"
    documents = [IdsDocument.from_path(models["ids"])]

    verdict = check_ifc(models["failing"], documents, report_html=True)
    assert verdict.status == "failed"
    assert verdict.reason == (
        "1 of 2 specifications failed: 'Walls are rated EI60 or EI90 or EI120' (1 failing element)"
    )
    (failing,) = verdict.failing
    assert (failing.facet, failing.applicable, failing.failed) == ("Property", 3, 1)
    (element,) = failing.failures
    assert element.global_id == failing_wall.global_id
    assert (element.ifc_class, element.name) == ("IfcWall", "Wall 3")
    assert "EI30" in element.reason
    assert verdict.report_html is not None
    assert failing_wall.global_id.encode() in verdict.report_html

    passing = check_ifc(models["passing"], documents, report_html=True)
    assert (passing.status, passing.reason, passing.report_html) == ("passed", "", None)
    assert len(passing.requirements) == 2
    assert all(r.passed and r.applicable == 3 for r in passing.requirements)


def test_time_limit_and_memory_ceiling_end_the_worker_with_a_reason(models: dict[str, Path]) -> None:
    documents = [IdsDocument.from_path(models["ids"])]
    # Loading IfcOpenShell alone takes the worker more than a second and more than 64 MiB of address space.
    slow = check_ifc(models["passing"], documents, Limits(seconds=0.05))
    assert slow.status == "did_not_finish"
    assert slow.reason == f"{DID_NOT_FINISH}: time limit of 0.05 s reached"
    small = check_ifc(models["passing"], documents, Limits(memory_bytes=64 * 1024**2))
    assert small.status == "did_not_finish"
    assert small.reason.startswith(f"{DID_NOT_FINISH}: the worker ran out of memory")
    assert "67108864 bytes" in small.reason


def test_unreadable_ifc_did_not_finish_and_invalid_ids_is_refused(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    junk = tmp_path / "junk.ifc"
    junk.write_text("not a STEP file")
    verdict = check_ifc(junk, [IdsDocument.from_path(models["ids"])])
    assert verdict.status == "did_not_finish"
    assert verdict.reason.startswith(DID_NOT_FINISH)
    with pytest.raises(IdsDocumentError, match="not a valid IDS document"):
        IdsDocument("broken.ids", b"<ids/>").parse()


def test_cli_prints_verdicts_and_exits_non_zero_on_failure(
    models: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ids", "check", str(models["ids"]), str(models["passing"])]) == 0
    assert f"PASS {models['passing']}" in capsys.readouterr().out

    code = main(["ids", "check", str(models["ids"]), str(models["passing"]), str(models["failing"])])
    out = capsys.readouterr().out
    assert code == 1
    assert f"FAIL {models['failing']}" in out
    assert "[Walls are rated EI60 or EI90 or EI120]" in out
    assert "1 of 3 elements fail" in out
    failing_wall = generate_ifc(3, name="failing", walls=3, doors=1, windows=1).elements[2]
    assert f"{failing_wall.global_id} IfcWall Wall 3" in out
    assert out.rstrip().endswith("ids check: 1 of 2 files pass")


def test_cli_refuses_an_invalid_ids_and_missing_files(
    tmp_path: Path, models: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.ids"
    broken.write_text("<ids/>")
    assert main(["ids", "check", str(broken), str(models["passing"])]) == 2
    assert "not a valid IDS document" in capsys.readouterr().err
    assert main(["ids", "check", str(models["ids"]), str(tmp_path / "missing.ifc")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_console_script_is_installed(models: dict[str, Path]) -> None:
    script = Path(sys.executable).with_name("aps-pipeline")
    result = subprocess.run([str(script), "ids", "check", str(models["ids"]), str(models["failing"])],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "ids check: 0 of 1 files pass" in result.stdout
