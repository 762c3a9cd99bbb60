"""`aps-api` runs one server process per CPU unless told otherwise (APS_API_WORKERS, or --workers)."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from aps_api.cli import default_workers
from aps_api.settings import APISettings


def test_one_process_per_usable_cpu_unless_configured() -> None:
    assert default_workers(None) == len(os.sched_getaffinity(0))
    assert default_workers(3) == 3


def test_the_environment_sets_the_count_and_a_bad_count_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APS_API_DATABASE_URL", "postgresql://reader@db/results")
    monkeypatch.setenv("APS_API_WORKERS", "")  # compose's default: one per CPU
    assert APISettings().workers is None  # type: ignore[call-arg]
    monkeypatch.setenv("APS_API_WORKERS", "4")
    assert APISettings().workers == 4  # type: ignore[call-arg]
    for bad in ("0", "many", "1.5"):
        monkeypatch.setenv("APS_API_WORKERS", bad)
        with pytest.raises(ValidationError, match="workers"):
            APISettings()  # type: ignore[call-arg]
