"""POST /job is not idempotent: with x-ads-force a second POST restarts a running (billed) translation.

The client must never send it twice by accident: after an ambiguous failure (the request may have reached
APS) it reads the manifest before deciding to POST again.
"""

from __future__ import annotations

from aps_client import APSClient
from aps_devstack import EmulatorServer
from tests.fixtures.client import CUBE_OBJ, client_config, stat, upload_bytes, wait_for_manifest
from tests.fixtures.gateway import LossyGateway, lossy_gateway

JOB_PATH = "/modelderivative/v2/designdata/job"


def test_a_job_whose_answer_was_lost_is_not_posted_again(
    emulator: EmulatorServer, lossy_gateway: LossyGateway
) -> None:
    emulator.configure(translation_seconds=30)
    with APSClient(client_config(emulator, base_url=lossy_gateway.base_url)) as aps:
        urn = upload_bytes(aps, "job-once", "cube.obj", CUBE_OBJ)
        lossy_gateway.lose_answers("POST", JOB_PATH)
        accepted = aps.derivative.start_job(urn)
        assert accepted.urn == urn
        assert aps.derivative.manifest(urn).status in ("pending", "inprogress")
    assert lossy_gateway.lost == 1
    assert stat(emulator, "job") == 1


def test_a_forced_job_whose_answer_was_lost_does_not_restart_the_new_translation(
    emulator: EmulatorServer, lossy_gateway: LossyGateway
) -> None:
    emulator.configure(translation_seconds=0.2)
    with APSClient(client_config(emulator, base_url=lossy_gateway.base_url)) as aps:
        urn = upload_bytes(aps, "job-forced", "cube.obj", CUBE_OBJ)
        aps.derivative.start_job(urn)
        assert wait_for_manifest(aps, urn).status == "success"
        emulator.configure(translation_seconds=30)
        lossy_gateway.lose_answers("POST", JOB_PATH)
        aps.derivative.start_job(urn, force=True)
        assert aps.derivative.manifest(urn).status in ("pending", "inprogress")
    assert stat(emulator, "job") == 2  # the first translation and the forced one; no third POST


def test_a_job_answer_lost_before_it_reached_aps_is_posted_again(emulator: EmulatorServer) -> None:
    """A 429 means APS did not act: sending the POST again is safe, and needed."""
    emulator.configure(translation_seconds=0.2, fault_429_rate=1.0, fault_429_operations=["job"])
    with APSClient(client_config(emulator, max_attempts=3)) as aps:
        urn = upload_bytes(aps, "job-429", "cube.obj", CUBE_OBJ)
        emulator.configure(fault_429_rate=0.0)
        aps.derivative.start_job(urn)
        assert wait_for_manifest(aps, urn).status == "success"
    assert stat(emulator, "job") == 1


async def test_the_async_client_looks_before_posting_again_too(
    emulator: EmulatorServer, lossy_gateway: LossyGateway
) -> None:
    from aps_client import AsyncAPSClient

    emulator.configure(translation_seconds=30)
    config = client_config(emulator, base_url=lossy_gateway.base_url)
    with APSClient(config) as aps:
        urn = upload_bytes(aps, "job-once-async", "cube.obj", CUBE_OBJ)
    lossy_gateway.lose_answers("POST", JOB_PATH)
    async with AsyncAPSClient(config) as aps_async:
        accepted = await aps_async.derivative.start_job(urn)
    assert accepted.result in ("pending", "inprogress")
    assert stat(emulator, "job") == 1
