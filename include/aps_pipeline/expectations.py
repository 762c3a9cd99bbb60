"""Batch expectations with Great Expectations 1.x over the files that passed the per-file checks.

Two suites run on one pandas DataFrame (one row per file) in an ephemeral GX context (nothing on disk):

- `aps_files.enforced`: required fields present (key, project, sha256), sha256 well-formed, size within
  (0, max_file_size]. A file that breaks one of these is rejected (check `expectations`).
- `aps_files.report`: sha256 unique in the batch. Duplicate content is ALLOWED: the pipeline dedupes it (one
  APS model per content hash), so this suite only reports duplicates; its `success` is false when the batch
  has some, and no file is rejected for it.

Both results are stored as `validation_runs` rows (suite, success, statistics, per-expectation results).
GX is imported lazily: it takes seconds to import, and only this step needs it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)
# GX logs every decorator it registers at INFO on import: hundreds of lines in each task log.
logging.getLogger("great_expectations").setLevel(logging.WARNING)

ENFORCED_SUITE = "aps_files.enforced"
REPORT_SUITE = "aps_files.report"
COLUMNS = ("file_id", "key", "project", "sha256", "size")


@dataclass
class SuiteOutcome:
    suite: str
    success: bool
    statistics: dict[str, Any]
    results: list[dict[str, Any]]
    failing_file_ids: dict[int, list[str]] = field(default_factory=dict)  # file id -> failed expectations


def _context() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no network calls from a pipeline task
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        progress_bars=ProgressBarsConfig(globally=False),
        analytics_enabled=False,
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _suites(gx: Any, max_file_size: int) -> dict[str, list[Any]]:
    e = gx.expectations
    return {
        ENFORCED_SUITE: [
            e.ExpectColumnValuesToNotBeNull(column="key"),
            e.ExpectColumnValuesToNotBeNull(column="project"),
            e.ExpectColumnValuesToNotBeNull(column="sha256"),
            e.ExpectColumnValuesToMatchRegex(column="sha256", regex=r"^[0-9a-f]{64}$"),
            e.ExpectColumnValuesToBeBetween(column="size", min_value=1, max_value=max_file_size),
        ],
        REPORT_SUITE: [e.ExpectColumnValuesToBeUnique(column="sha256")],
    }


def run_batch_expectations(rows: list[dict[str, Any]], max_file_size: int) -> list[SuiteOutcome]:
    """Run both suites over `rows` (dicts with COLUMNS); an empty batch runs nothing."""
    if not rows:
        return []
    import great_expectations as gx
    import pandas as pd

    frame = pd.DataFrame([{c: row.get(c) for c in COLUMNS} for row in rows], columns=list(COLUMNS))
    frame["size"] = frame["size"].astype("int64")
    context = _context()
    batch_definition = (
        context.data_sources.add_pandas("landing_files")
        .add_dataframe_asset("files")
        .add_batch_definition_whole_dataframe("batch")
    )
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})

    outcomes = []
    for name, expectations in _suites(gx, max_file_size).items():
        suite = context.suites.add(gx.ExpectationSuite(name=name))
        for expectation in expectations:
            suite.add_expectation(expectation)
        result = batch.validate(suite, result_format="COMPLETE").to_json_dict()
        failing: dict[int, list[str]] = {}
        for item in result["results"]:
            if item["success"]:
                continue
            kind = item["expectation_config"]["type"]
            for index in item.get("result", {}).get("unexpected_index_list") or []:
                failing.setdefault(int(frame.iloc[int(index)]["file_id"]), []).append(kind)
        outcomes.append(
            SuiteOutcome(
                suite=name,
                success=bool(result["success"]),
                statistics=dict(result["statistics"]),
                results=[_compact(item) for item in result["results"]],
                failing_file_ids=failing,
            )
        )
        logger.info("expectation suite %s: success=%s %s", name, result["success"], result["statistics"])
    return outcomes


def _compact(item: dict[str, Any]) -> dict[str, Any]:
    """One expectation's result without GX's bulky parts (full unexpected lists, batch ids)."""
    config = item["expectation_config"]
    details = item.get("result") or {}
    return {
        "expectation": config["type"],
        "kwargs": {k: v for k, v in config.get("kwargs", {}).items() if k != "batch_id"},
        "success": item["success"],
        "element_count": details.get("element_count"),
        "unexpected_count": details.get("unexpected_count"),
        "partial_unexpected_list": (details.get("partial_unexpected_list") or [])[:20],
        "exception": (item.get("exception_info") or {}).get("exception_message"),
    }
