"""The emulator driven by a client we did not write: Autodesk's official Node SDK, unmodified, over HTTP.

The SDK (tests/sdk/drive_sdk.js) takes a two-legged token, creates a bucket, reads its details, uploads a
file above 5 MiB with its own upload helper (so two signed-S3 parts), starts a translation, polls the
manifest, lists the views and reads properties, the tree and a thumbnail. Then each side reads what the
other wrote: the SDK reads an object and a manifest our client made, our client reads the SDK's. The SDK's
traffic passes through a recording proxy and is validated against Autodesk's OpenAPI specs as well.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from aps_client import APSClient, from_urn
from aps_devstack import EmulatorServer
from aps_samples import generate_obj
from tests.fixtures.aps_spec import APSSpecs, RecordingProxy, aps_exchanges, checked, problems, without_schema
from tests.fixtures.client import CUBE_OBJ, aps, stat, upload_bytes, wait_for_manifest
from tests.fixtures.official_sdk import OfficialSDK

MIB = 1024 * 1024
PNG_SIGNATURE_HEX = b"\x89PNG\r\n\x1a\n".hex()


# Every answer of the SDK's flow has a body schema in the specs (the first tree/properties reads answer 202,
# which the spec declares with one), so nothing is left to check by aps-api.md's shapes alone.
SDK_FLOW_WITHOUT_SCHEMA: set[tuple[str, int, str]] = set()


def test_official_sdk_flow_and_both_clients_read_each_other(
    official_sdk: OfficialSDK, aps_specs: APSSpecs, emulator: EmulatorServer, aps: APSClient, tmp_path: Path
) -> None:
    emulator.configure(translation_seconds=0.5)
    ours_urn = upload_bytes(aps, "ours-bucket", "cube.obj", CUBE_OBJ)
    aps.derivative.start_job(ours_urn)
    assert wait_for_manifest(aps, ours_urn).status == "success"

    # A few objects padded with comment lines past 5 MiB: two parts for the SDK's 5 MiB chunks, while the
    # property answers stay small enough to validate against the specs quickly.
    model = generate_obj(7, name="sdk-tower", objects=4).data
    padding = b"# padding to make the upload multipart\n" * (6 * MIB // 40)
    data = model + padding
    assert 5 * MIB < len(data) <= 10 * MIB
    source = tmp_path / "tower.obj"
    source.write_bytes(data)
    parts_before = stat(emulator, "upload_part")

    with RecordingProxy(emulator.base_url) as proxy:  # the SDK's traffic, for the spec check below
        seen = official_sdk.run(tmp_path, {
            "baseUrl": proxy.base_url, "clientId": emulator.client_id,
            "clientSecret": emulator.client_secret, "bucketKey": "sdk-bucket", "objectKey": "tower.obj",
            "filePath": str(source),
            "theirs": {"bucketKey": "ours-bucket", "objectKey": "cube.obj", "urn": ours_urn},
        })

    assert seen["token"] == {"token_type": "Bearer", "expires_in": 3599, "has_access_token": True}
    assert seen["bucketCreated"]["bucketKey"] == "sdk-bucket"
    assert seen["bucketDetails"]["bucketKey"] == "sdk-bucket"
    assert seen["bucketDetails"]["policyKey"] == "transient"
    assert seen["bucketDetails"]["bucketOwner"] == emulator.client_id
    uploaded = seen["uploaded"]
    assert (uploaded["bucketKey"], uploaded["objectKey"], uploaded["size"]) == ("sdk-bucket", "tower.obj",
                                                                                  len(data))
    assert uploaded["objectId"] == "urn:adsk.objects:os.object:sdk-bucket/tower.obj"
    assert seen["uploadProgress"][-1] == 100
    assert stat(emulator, "upload_part") - parts_before == 2
    assert seen["job"]["result"] == "success"
    assert seen["job"]["urn"] == seen["urn"]
    manifest = seen["manifest"]
    assert (manifest["status"], manifest["progress"]) == ("success", "complete")
    assert manifest["hasThumbnail"] == "true"
    assert {d["outputType"] for d in manifest["derivatives"]} == {"svf2", "thumbnail"}
    views = seen["views"]["data"]["metadata"]
    assert [v["role"] for v in views] == ["3d"]  # OBJ has no 2D sheets
    collection = seen["properties"]["data"]["collection"]
    assert collection
    assert all({"objectid", "name", "properties"} <= set(item) for item in collection)
    assert seen["tree"]["data"]["objects"][0]["objectid"] == 1
    assert seen["thumbnail"]["signature"] == PNG_SIGNATURE_HEX
    assert seen["thumbnail"]["bytes"] > 100

    # The SDK reads what our client wrote ...
    ours = aps.oss.object_details("ours-bucket", "cube.obj")
    assert seen["theirsObject"]["size"] == len(CUBE_OBJ) == ours.size
    assert seen["theirsObject"]["sha1"] == hashlib.sha1(CUBE_OBJ).hexdigest()
    assert seen["theirsObject"]["objectId"] == from_urn(ours_urn)
    assert seen["theirsManifest"]["status"] == "success"
    assert seen["theirsManifest"]["urn"] == ours_urn

    # ... and our client reads what the SDK wrote.
    details = aps.oss.object_details("sdk-bucket", "tower.obj")
    assert (details.size, details.sha1) == (len(data), hashlib.sha1(data).hexdigest())
    sdk_urn = seen["urn"]
    assert from_urn(sdk_urn) == uploaded["objectId"]
    assert aps.derivative.manifest(sdk_urn).status == "success"
    assert [v.guid for v in aps.derivative.views(sdk_urn)] == [v["guid"] for v in views]
    names = {p.name for p in aps.derivative.properties(sdk_urn, views[0]["guid"])}
    assert names == {item["name"] for item in collection}
    assert aps.derivative.thumbnail(sdk_urn).startswith(b"\x89PNG")

    # Every request the SDK sent, and every answer it got, against Autodesk's specs.
    sent = aps_exchanges(proxy.exchanges)
    assert sent[0].request.url.raw_path == b"//authentication/v2/token"  # as the SDK builds paths
    verdicts = checked(aps_specs, sent, check_requests=True)
    assert not problems(verdicts), "\n".join(problems(verdicts))
    assert without_schema(verdicts) == SDK_FLOW_WITHOUT_SCHEMA
