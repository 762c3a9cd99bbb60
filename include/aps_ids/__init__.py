"""buildingSMART IDS checks of IFC files, without Airflow: load IDS documents, check an IFC with ifctester in
a worker subprocess (a time limit and a memory ceiling per file), and get the results as data.

    documents = [IdsDocument.from_path("walls.ids")]        # specs.py: read and validated once
    verdict = check_ifc("model.ifc", documents, Limits(seconds=600, memory_bytes=4 << 30))   # runner.py
    verdict.status        # "passed" | "failed" | "did_not_finish"
    verdict.requirements  # one RequirementResult per specification and requirement (results.py)

The parser (IfcOpenShell) runs only in the worker (worker.py), so a crash or a runaway model costs that
process, never the caller. `aps-pipeline ids check SPEC.ids FILE.ifc...` (cli.py) is the same check from a
shell.
"""

from __future__ import annotations

from aps_ids.results import FailingElement, IdsStatus, IdsVerdict, RequirementResult
from aps_ids.runner import Limits, check_ifc
from aps_ids.specs import IdsDocument, IdsDocumentError

__all__ = [
    "FailingElement",
    "IdsDocument",
    "IdsDocumentError",
    "IdsStatus",
    "IdsVerdict",
    "Limits",
    "RequirementResult",
    "check_ifc",
]
