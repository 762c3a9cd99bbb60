"""aps_client pure logic: URNs, manifest and result parsing, configuration."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from aps_client import APSConfig, Manifest, ObjectProperties, Token, TreeNode, UploadState, from_urn, to_urn
from aps_client.urn import object_id


def test_urn_matches_the_verified_example() -> None:
    oid = "urn:adsk.objects:os.object:my-bucket/my-file.dwg"
    urn = "dXJuOmFkc2sub2JqZWN0czpvcy5vYmplY3Q6bXktYnVja2V0L215LWZpbGUuZHdn"
    assert to_urn(oid) == urn
    assert from_urn(urn) == oid


@pytest.mark.parametrize("key", ["a.ifc", "ab.ifc", "abc.ifc", "dir/sub/ü ñ?.rvt", "x" * 300])
def test_urn_round_trip_is_url_safe_and_unpadded(key: str) -> None:
    oid = object_id("bucket-1", key)
    urn = to_urn(oid)
    assert "=" not in urn
    assert "+" not in urn
    assert "/" not in urn
    assert from_urn(urn) == oid


def test_from_urn_accepts_standard_alphabet_and_padding() -> None:
    oid = object_id("b", "f>>?.obj")  # bytes that give '+' and '/' in the standard alphabet
    import base64

    standard = base64.b64encode(oid.encode()).decode()
    assert from_urn(standard) == oid


def test_from_urn_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not a base64 URN"):
        from_urn("%%%")
    with pytest.raises(ValueError, match="empty"):
        to_urn("")


PENDING = {
    "type": "manifest",
    "urn": "dXJu",
    "status": "pending",
    "progress": "0% complete",
    "hasThumbnail": "false",
    "region": "US",
    "version": "1.0",
    "derivatives": [],
}
RUNNING = {
    "type": "manifest",
    "urn": "dXJu",
    "status": "inprogress",
    "progress": "40% complete",
    "hasThumbnail": "true",
    "region": "EMEA",
    "derivatives": [
        {
            "name": "a.rvt",
            "outputType": "svf2",
            "status": "success",
            "progress": "complete",
            "hasThumbnail": "true",
            "children": [{"guid": "g1", "type": "geometry", "role": "3d"}],
        }
    ],
}
FAILED = {
    "type": "manifest",
    "urn": "dXJu",
    "status": "failed",
    "progress": "complete",
    "hasThumbnail": "false",
    "region": "US",
    "somethingNew": {"x": 1},
    "derivatives": [
        {
            "name": "bad.dwg",
            "outputType": "svf2",
            "status": "failed",
            "progress": "complete",
            "hasThumbnail": "false",
            "messages": [
                {"type": "error", "code": "AutoCAD-InvalidFile", "message": ["Sorry,", "invalid file."]}
            ],
            "children": [
                {
                    "guid": "r",
                    "type": "resource",
                    "role": "graphics",
                    "mime": "application/autodesk-svf2",
                    "messages": [{"type": "warning", "code": "ATF-1023", "message": "warning text"}],
                }
            ],
        }
    ],
}


def test_manifest_pending() -> None:
    m = Manifest.model_validate(PENDING)
    assert (m.status, m.is_finished, m.progress_percent, m.has_thumbnail, m.derivatives) == (
        "pending",
        False,
        0,
        False,
        [],
    )


def test_manifest_in_progress_parses_strings_as_booleans() -> None:
    m = Manifest.model_validate(RUNNING)
    assert m.progress_percent == 40
    assert not m.is_finished
    assert m.has_thumbnail is True
    assert m.derivatives[0].output_type == "svf2"
    assert m.derivatives[0].children[0].role == "3d"


def test_manifest_failed_collects_messages_from_the_whole_tree_and_keeps_unknown_fields() -> None:
    m = Manifest.model_validate(FAILED)
    assert m.is_finished
    assert m.progress_percent == 100
    assert [(msg.type, msg.code, msg.message) for msg in m.messages()] == [
        ("error", "AutoCAD-InvalidFile", "Sorry, invalid file."),
        ("warning", "ATF-1023", "warning text"),
    ]
    assert m.model_extra == {"type": "manifest", "somethingNew": {"x": 1}}


@pytest.mark.parametrize(
    ("status", "finished"), [("success", True), ("timeout", True), ("inprogress", False)]
)
def test_manifest_is_finished(status: str, finished: bool) -> None:
    assert Manifest.model_validate({**PENDING, "status": status}).is_finished is finished


def test_tree_and_properties_parse_documented_shapes() -> None:
    tree = TreeNode.model_validate(
        {"objectid": 1, "name": "Model", "objects": [{"objectid": 2, "name": "Wall"}]}
    )
    assert tree.objects[0].name == "Wall"
    assert tree.objects[0].objects == []
    props = ObjectProperties.model_validate(
        {"objectid": 2, "name": "Wall", "externalId": "abc-1", "properties": {"Dimensions": {"Width": "1 m"}}}
    )
    assert props.external_id == "abc-1"
    assert props.properties["Dimensions"]["Width"] == "1 m"


def test_upload_state_survives_a_json_round_trip() -> None:
    state = UploadState(upload_key="k", part_size=5 << 20, size=12 << 20, completed_parts={1: "e1", 3: "e3"})
    again = UploadState.model_validate_json(state.model_dump_json())
    assert again == state
    assert again.completed_parts[3] == "e3"


def test_token_repr_hides_the_access_token() -> None:
    token = Token(access_token="very-secret-token", expires_in=3599)
    assert "very-secret-token" not in repr(token)
    assert "very-secret-token" not in str(token)


def test_config_hides_secret_and_validates() -> None:
    cfg = APSConfig(client_id="id", client_secret=SecretStr("s3cret"), base_url="http://x/", region="emea")
    assert "s3cret" not in repr(cfg)
    assert cfg.base_url == "http://x"
    assert cfg.region == "EMEA"
    with pytest.raises(ValidationError):
        APSConfig(client_id="id", client_secret=SecretStr("s"), upload_part_size=1024)  # below 5 MiB
    with pytest.raises(ValidationError):
        APSConfig(client_id="id", client_secret=SecretStr("s"), upload_url_batch=26)  # above 25


def test_config_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APS_CLIENT_ID", "cid")
    monkeypatch.setenv("APS_CLIENT_SECRET", "csecret")
    monkeypatch.setenv("APS_SCOPES", "data:read, viewables:read")
    monkeypatch.setenv("APS_REGION", "aus")
    cfg = APSConfig.from_env()
    assert (cfg.client_id, cfg.client_secret.get_secret_value(), cfg.scopes, cfg.region) == (
        "cid",
        "csecret",
        ("data:read", "viewables:read"),
        "AUS",
    )
    monkeypatch.delenv("APS_CLIENT_SECRET")
    with pytest.raises(ValueError, match="APS_CLIENT_SECRET"):
        APSConfig.from_env()


def test_the_viewer_streams_emea_models_from_the_eu_endpoint() -> None:
    from aps_client.regions import REGIONS, viewer_api

    assert viewer_api("EMEA") == viewer_api("emea") == "streamingV2_EU"
    assert {viewer_api(r) for r in REGIONS if r != "EMEA"} == {"streamingV2"}
