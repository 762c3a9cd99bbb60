"""Real-shape mode: the emulator answers in the shapes real APS sends (drawn per response from a seed), and
the client reads every one of them back to the same data as the tidy answer."""

from __future__ import annotations

import io
import json
import random
from typing import Any

import pytest
from pydantic import SecretStr

from aps_client import APSClient, APSConfig, to_urn
from aps_client.derivative_readers import properties_from_chunks, tree_entries_from_chunks
from aps_client.models import JobAccepted, Manifest
from aps_emulator import real_shapes
from aps_results.records import IFC_GLOBAL_ID, properties_from_aps
from aps_samples import generate_ifc
from tests.fixtures.emulator_http import EmulatorHTTP, emu

BUCKET = "real-shapes"
ANSWERS = 12  # responses read per endpoint: enough for every variant to come up with the seeds below


@pytest.fixture
def translated(emu: EmulatorHTTP) -> tuple[str, str]:
    """An IFC translated with the tidy shapes; (urn, guid of its 3D view)."""
    emu.create_bucket(BUCKET)
    urn = emu.translated(BUCKET, "tower.ifc", generate_ifc(3, name="tower", walls=4, doors=2).data)
    return urn, emu.view_guid(urn)


def _ready(emu: EmulatorHTTP, urn: str, tail: str) -> Any:
    """The answer once APS's extraction is done (tree and properties answer 202 at first)."""
    for _ in range(10):
        response = emu.md_get(urn, tail)
        if response.status_code == 200:
            return response.json()
    raise AssertionError(f"{tail} still not ready: {response.status_code}")


def _tidy_then_real(emu: EmulatorHTTP, urn: str, tail: str, seed: int) -> tuple[Any, list[Any]]:
    tidy = _ready(emu, urn, tail)
    emu.server.configure(real_shapes_seed=seed)
    return tidy, [_ready(emu, urn, tail) for _ in range(ANSWERS)]


def _chunks(body: Any) -> list[bytes]:
    raw = json.dumps(body).encode()
    return [raw[i:i + 50] for i in range(0, len(raw), 50)]


def test_tree_answers_vary_key_order_and_read_back_to_the_same_tree(
    emu: EmulatorHTTP, translated: tuple[str, str]
) -> None:
    urn, guid = translated
    tidy, answers = _tidy_then_real(emu, urn, f"metadata/{guid}", seed=11)
    expected = {(e.objectid, e.name, e.parent) for e in tree_entries_from_chunks(_chunks(tidy))}
    orders = set()
    for answer in answers:
        assert {(e.objectid, e.name, e.parent) for e in tree_entries_from_chunks(_chunks(answer))} == expected
        stack = list(answer["data"]["objects"])
        while stack:
            node = stack.pop()
            orders.add(tuple(node))
            stack.extend(node.get("objects") or [])
    assert ("objectid", "objects", "name") in orders  # the real Revit order came up
    assert ("objectid", "name", "objects") in orders


def test_property_answers_use_lists_uncategorised_values_and_positional_ids_and_keep_the_globalids(
    emu: EmulatorHTTP, translated: tuple[str, str]
) -> None:
    urn, guid = translated
    tidy, answers = _tidy_then_real(emu, urn, f"metadata/{guid}/properties", seed=11)
    # Only IFC elements have GlobalIds (the file's own node is named by its file name).
    expected = {item["objectid"]: item["externalId"] if IFC_GLOBAL_ID.fullmatch(item["externalId"]) else None
                for item in tidy["data"]["collection"]}
    seen = set()
    for answer in answers:
        items = list(properties_from_chunks(_chunks(answer)))
        assert {item.objectid for item in items} == set(expected)
        for record in properties_from_aps(guid, answer["data"]["collection"], source_format="ifc"):
            assert record.global_id == expected[record.object_id]  # one way or the other, the GlobalId
            global_id = expected[record.object_id]
            if global_id is not None:
                seen.add("globalid" if record.external_id == global_id else "positional")
            values = record.properties
            seen.update("uncategorised" for value in values.values() if not isinstance(value, dict))
            seen.update("list" for inner in values.values() if isinstance(inner, dict)
                        for value in inner.values() if isinstance(value, list))
    assert seen == {"positional", "globalid", "uncategorised", "list"}


def test_failed_manifests_put_messages_at_the_root_as_lists_and_the_client_reads_the_same_text(
    emu: EmulatorHTTP,
) -> None:
    emu.create_bucket(BUCKET)
    emu.server.configure(fail_keys=["broken.ifc"])
    urn = emu.translated(BUCKET, "broken.ifc", generate_ifc(4, name="broken").data)
    tidy, answers = _tidy_then_real(emu, urn, "manifest", seed=5)
    expected = {(m.code, m.message) for m in Manifest.model_validate(tidy).messages()}
    places = set()
    for answer in answers:
        manifest = Manifest.model_validate(answer)
        assert manifest.status == "failed"
        assert {(m.code, m.message) for m in manifest.messages()} == expected
        places.add("root" if answer.get("messages") else "derivative")
        listed = [m for m in answer.get("messages") or [] if isinstance(m["message"], list)]
        places.update("list" for _ in listed[:1])
    assert places == {"root", "derivative", "list"}


def test_an_in_progress_manifest_mixes_finished_children_and_missing_names(emu: EmulatorHTTP) -> None:
    emu.create_bucket(BUCKET)
    emu.server.configure(translation_seconds=1000)
    details = emu.upload(BUCKET, "slow.ifc", generate_ifc(5, name="slow").data)
    urn = to_urn(details["objectId"])
    assert emu.start_job(urn).status_code == 200
    emu.server.advance_clock(300)
    emu.server.configure(real_shapes_seed=3)
    answers = [emu.md_get(urn, "manifest").json() for _ in range(ANSWERS)]
    assert all(Manifest.model_validate(a).status == "inprogress" for a in answers)
    statuses = {d.get("status") for a in answers for d in a["derivatives"]}
    assert statuses == {"inprogress", "success"}  # the thumbnail finished under an inprogress root
    assert any("name" not in d for a in answers for d in a["derivatives"])
    assert not any(Manifest.model_validate(a).is_finished for a in answers)


def test_uploads_without_sha1_in_the_completion_get_it_from_the_details_and_jobs_carry_register_keys(
    emulator: Any, emu: EmulatorHTTP
) -> None:
    emu.create_bucket(BUCKET)
    emulator.configure(real_shapes_seed=1)
    answers = [emu.upload(BUCKET, f"m{i}.ifc", generate_ifc(10 + i, name=f"m{i}").data) for i in range(6)]
    assert any("sha1" not in answer for answer in answers)
    config = APSConfig(client_id=emulator.client_id, client_secret=SecretStr(emulator.client_secret),
                       base_url=emulator.base_url)
    data = generate_ifc(20, name="client").data
    with APSClient(config) as aps:
        before = emulator.stats()["requests"].get("object_details", 0)
        details = [aps.oss.upload(BUCKET, f"client-{i}.ifc", io.BytesIO(data), size=len(data))
                   for i in range(4)]
        after = emulator.stats()["requests"].get("object_details", 0)
        job = aps.derivative.start_job(to_urn(details[0].object_id))
    assert all(d.sha1 for d in details)  # from the completion, or from GET .../details when it had none
    assert after > before
    assert isinstance(job, JobAccepted)
    assert job.register_keys


def test_webhook_events_carry_an_id_as_scope_and_sometimes_no_register_keys() -> None:
    event = {"status": "success", "scope": "wf", "registerKey": [{"name": "svf2"}]}
    payloads = [real_shapes.webhook_event(event, random.Random(i)) for i in range(8)]
    assert all(p["scope"] != "wf" for p in payloads)
    assert {len(p["registerKey"]) for p in payloads} == {0, 1}
