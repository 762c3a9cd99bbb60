"""`aps-api` runs one server process per CPU unless told otherwise."""

from __future__ import annotations

import os

import pytest

from aps_api.cli import WORKERS_ENV, default_workers


def test_one_process_per_usable_cpu_by_default() -> None:
    assert default_workers({}) == len(os.sched_getaffinity(0))
    assert default_workers({WORKERS_ENV: " "}) == len(os.sched_getaffinity(0))  # compose's empty default


def test_the_environment_sets_the_count_and_a_bad_count_is_refused() -> None:
    assert default_workers({WORKERS_ENV: "3"}) == 3
    for bad in ("0", "-2", "many", "1.5"):
        with pytest.raises(ValueError, match=WORKERS_ENV):
            default_workers({WORKERS_ENV: bad})
