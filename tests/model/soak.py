"""Soak mode of the model-based test: the state machine with random seeds for as long as asked.

    python -m tests.model.soak                      # SOAK_MINUTES (default 30) of random seeds
    python -m tests.model.soak --seed 1234 --landing s3   # one seed again, shrunk to a minimal example

Starts its own PostgreSQL, S3 server and APS emulator (as the test fixtures do), then runs the machine seed
after seed (SOAK_EXAMPLES_PER_SEED examples each) until the time is up. Prints examples per second as it
goes; on a falsifying example, Hypothesis's shrunk steps and the seed to re-run it, and exits 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from hypothesis import HealthCheck, Phase, Verbosity, seed, settings
from hypothesis.stateful import run_state_machine_as_test

from aps_devstack import LocalPostgres, start_emulator, start_s3_server
from tests.model.driver import Services
from tests.model.machine import PipelineMachine, machine_for

EXAMPLES_PER_SEED = int(os.environ.get("SOAK_EXAMPLES_PER_SEED", "5"))
STEPS = int(os.environ.get("SOAK_STEPS", "40"))


def soak_settings(replay: bool) -> settings:
    """A soak seed reports its first falsifying example as found (shrinking one costs minutes at ~10 s an
    example); the replay of a seed (`--seed`) shrinks it to a minimal one and prints every step."""
    phases = list(Phase) if replay else [Phase.explicit, Phase.generate]
    return settings(max_examples=EXAMPLES_PER_SEED, stateful_step_count=STEPS, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True, phases=phases,
                    verbosity=Verbosity.verbose if replay else Verbosity.normal)


def run_seed(services: Services, number: int, landing_kind: str, replay: bool) -> None:
    machine = seed(number)(machine_for(services, landing_kind))
    run_state_machine_as_test(machine, settings=soak_settings(replay))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "30")))
    parser.add_argument("--seed", type=int, help="run this one seed (a reproduction) and stop")
    parser.add_argument("--landing", choices=["s3", "local", "both"], default="both")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the steps' own logs would drown the steps and the figures

    base = Path(tempfile.mkdtemp(prefix="aps-soak-"))
    postgres = LocalPostgres.start(base / "pg")
    s3 = start_s3_server(base)
    emulator = start_emulator(base)
    services = Services(postgres, s3, emulator, base)
    kinds = ["s3", "local"] if args.landing == "both" else [args.landing]
    started, seeds_run, failures = time.monotonic(), 0, 0
    seeds = [args.seed] if args.seed is not None else None
    try:
        while True:
            if seeds is not None:
                if not seeds:
                    break
                number = seeds.pop()
            elif time.monotonic() - started > args.minutes * 60:
                break
            else:
                number = random.SystemRandom().randrange(2**32)
            kind = kinds[seeds_run % len(kinds)]
            try:
                run_seed(services, number, kind, replay=args.seed is not None)
            except Exception:
                failures += 1
                traceback.print_exc()
                print(f"FALSIFIED: seed {number} landing {kind}: re-run with "
                      f"`python -m tests.model.soak --seed {number} --landing {kind}`", flush=True)
                if seeds is None:
                    break
            seeds_run += 1
            elapsed = time.monotonic() - started
            examples = PipelineMachine.examples
            print(f"soak: seed {number} ({kind}) done; {seeds_run} seeds, {examples} examples in "
                  f"{elapsed:.0f}s = {examples / elapsed:.3f} examples/s", flush=True)
    finally:
        emulator.stop()
        s3.stop()
        postgres.destroy()
        shutil.rmtree(base, ignore_errors=True)
    elapsed = time.monotonic() - started
    print("soak steps: " + ", ".join(f"{k}={n}" for k, n in sorted(PipelineMachine.tally.items())))
    examples = PipelineMachine.examples
    for what, message in sorted(PipelineMachine.errors.items()):
        print(f"soak error seen: {what}: {message}")
    print(f"soak summary: {seeds_run} seeds, {examples} examples in {elapsed:.0f}s "
          f"({examples / max(elapsed, 1e-9):.3f} examples/s), {failures} falsified", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
