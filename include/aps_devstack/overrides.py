"""A copy of the pipelines file with some fields of one entry set: tuning a local stack without editing it.

    overrides = parse_assignments(["upload_concurrency=16", "models_per_task=50", "pool.slots=4"])
    path, pipeline = write_pipelines_file(workdir / "pipelines.yaml", "aps_ingest", overrides, env=env)
    stack.start_airflow(extra_env={PIPELINES_FILE_ENV: str(path), ...})

Values are YAML scalars (`16` is an int, `true` a bool, `2GiB` a string); a dotted key sets a field of a
nested mapping (`pool.slots`). The copy is validated like the real file before it is written, so a misspelt or
unknown field fails at once, with the config model's message, instead of when the DAG is parsed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from aps_pipeline.config import PipelineConfig, PipelineConfigError, parse_pipelines, pipelines_file


def parse_assignments(assignments: Iterable[str]) -> dict[str, Any]:
    """`["a=1", "pool.slots=4"]` -> `{"a": 1, "pool": {"slots": 4}}`; a later assignment wins."""
    result: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        path = [part.strip() for part in key.split(".")]
        if not sep or not all(path):
            raise ValueError(f"expected key=value (key may be dotted, e.g. pool.slots=4), got {assignment!r}")
        node = result
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = yaml.safe_load(raw) if raw.strip() else ""
    return result


def _set(entry: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(entry)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _set(merged[key], value)
        else:
            merged[key] = value
    return merged


def write_pipelines_file(
    dest: Path,
    pipeline: str,
    overrides: Mapping[str, Any],
    *,
    source: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[Path, PipelineConfig]:
    """Write `source` (default: the pipelines file in use) to `dest` with `overrides` set in entry `pipeline`.

    Returns the path and that entry as the components will see it (`env` expands `${...}` references: pass
    the stack's environment). Raises PipelineConfigError for an unknown pipeline or an invalid result.
    """
    source = source or pipelines_file()
    document = yaml.safe_load(source.read_text(encoding="utf-8"))
    entries = document.get("pipelines") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise PipelineConfigError(f"{source}: expected a mapping with a `pipelines:` list")
    names = [entry.get("name") for entry in entries if isinstance(entry, dict)]
    if pipeline not in names:
        raise PipelineConfigError(f"{source}: no pipeline named {pipeline!r} (have {names})")
    document["pipelines"] = [
        _set(entry, overrides) if isinstance(entry, dict) and entry.get("name") == pipeline else entry
        for entry in entries
    ]
    configs = parse_pipelines(document, source=f"{source} with {dict(overrides)}", env=env)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return dest, next(config for config in configs if config.name == pipeline)
