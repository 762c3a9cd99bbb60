"""The model-based test of the pipeline's invariants (design.md §9), CI mode: a fixed seed, bounded size.

`make soak` runs the same machine with random seeds for as long as asked (tests/model/soak.py).
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from aps_devstack import EmulatorServer, LocalPostgres, S3Server
from tests.model.driver import Services
from tests.model.machine import machine_for

CI_EXAMPLES = 16
CI_STEPS = 30
CI_PROFILE = settings(derandomize=True, database=None, max_examples=CI_EXAMPLES, stateful_step_count=CI_STEPS,
                      deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)


def test_no_input_fault_or_overlap_breaks_the_invariants(
    postgres: LocalPostgres, s3_server: S3Server, emulator_server: EmulatorServer, tmp_path: Path
) -> None:
    services = Services(postgres, s3_server, emulator_server, tmp_path)
    run_state_machine_as_test(machine_for(services, "s3"), settings=CI_PROFILE)
