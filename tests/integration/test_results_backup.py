"""`aps-db backup` / `aps-db restore` on real PostgreSQL: a restored database serves the same answers.

The backup is taken of a populated results database (models with views, objects, properties, thumbnails and
API keys), restored into a fresh database of the same cluster, and the API, started on each, must answer the
same for every model. A restore refuses a target that already holds the schema and a dump that does not match
its manifest, and verifies the restored rows against the manifest's counts and checksums.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from aps_devstack import LocalPostgres
from aps_devstack.s3 import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY
from aps_results import backup, backup_s3, cli
from aps_results.models import SCHEMA
from tests.fixtures.api import ResultsDB, RunningAPI, results_db, start_api

MODEL_ROUTES = ("", "/objects", "/properties", "/thumbnail")


def _populate(results_db: ResultsDB, models: int = 3) -> list[int]:
    ids = []
    for index in range(models):
        model_id = results_db.add_model(source_key=f"incoming/model-{index}.ifc")
        results_db.add_results(model_id, objects=4 + index)
        ids.append(model_id)
    return ids


def _answers(api: RunningAPI, key: str, model_ids: list[int]) -> dict[str, tuple[int, bytes]]:
    answers: dict[str, tuple[int, bytes]] = {}
    with api.client(key) as client:
        paths = ["/v1/models", *(f"/v1/models/{model_id}{route}" for model_id in model_ids
                                 for route in MODEL_ROUTES)]
        for path in paths:
            response = client.get(path)
            answers[path] = (response.status_code, response.content)
    return answers


def _restored_reader_url(results_db: ResultsDB, restored_admin_url: str) -> str:
    # The reader login is cluster-wide; the restore re-grants aps_reader on the restored schema.
    database = make_url(restored_admin_url).database
    return make_url(results_db.reader_url).set(database=database).render_as_string(hide_password=False)


def test_a_restored_backup_serves_the_same_answers(
    results_db: ResultsDB, postgres: LocalPostgres, start_api: Callable[..., RunningAPI], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model_ids = _populate(results_db)
    key = results_db.key()

    assert cli.main(["backup", str(tmp_path), "--url", results_db.admin_url]) == 0
    (folder,) = [path.parent for path in tmp_path.glob(f"*/{backup.MANIFEST_NAME}")]
    manifest = backup.BackupManifest.read(folder)
    assert manifest.tables["objects"].rows == sum(4 + index for index in range(len(model_ids)))
    assert manifest.tables["models"].rows == len(model_ids)

    restored_url = postgres.create_database(f"restored_{uuid.uuid4().hex[:10]}")
    assert cli.main(["restore", str(folder), "--url", restored_url]) == 0
    assert "match the manifest" in capsys.readouterr().out

    original = _answers(start_api(), key, model_ids)
    restored_api = start_api(database_url=SecretStr(_restored_reader_url(results_db, restored_url)))
    restored = _answers(restored_api, key, model_ids)
    assert {path: status for path, (status, _) in original.items()} == dict.fromkeys(original, 200)
    assert restored == original


def test_restore_refuses_a_database_that_holds_the_schema_unless_told(
    results_db: ResultsDB, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    _populate(results_db, models=1)
    folder, _ = backup.backup(results_db.admin_url, tmp_path)
    assert cli.main(["restore", str(folder), "--url", results_db.admin_url]) == 2
    assert "--replace" in capsys.readouterr().err

    results_db.add_model()  # a change after the backup: --replace puts the backed-up rows back
    assert cli.main(["restore", str(folder), "--url", results_db.admin_url, "--replace"]) == 0
    with create_engine(results_db.admin_url).connect() as connection:
        assert connection.execute(text(f"SELECT count(*) FROM {SCHEMA}.models")).scalar() == 1


def test_restore_detects_a_dump_or_rows_that_do_not_match_the_manifest(
    results_db: ResultsDB, postgres: LocalPostgres, tmp_path: Path,
) -> None:
    _populate(results_db, models=2)
    folder, manifest = backup.backup(results_db.admin_url, tmp_path)

    manifest_path = folder / backup.MANIFEST_NAME
    edited = json.loads(manifest_path.read_text())
    edited["tables"]["objects"]["rows"] += 1
    manifest_path.write_text(json.dumps(edited))
    target = postgres.create_database(f"restored_{uuid.uuid4().hex[:10]}")
    with pytest.raises(backup.BackupError, match="objects: backup"):
        backup.restore(folder, target)

    manifest_path.write_text(manifest.to_json())
    with (folder / backup.DUMP_NAME).open("ab") as dump:
        dump.write(b"tampered")
    with pytest.raises(backup.BackupError, match="sha256"):
        backup.restore(folder, postgres.create_database(f"restored_{uuid.uuid4().hex[:10]}"))


def test_backup_keeps_the_newest_n(results_db: ResultsDB, tmp_path: Path) -> None:
    for _ in range(3):
        assert cli.main(["backup", str(tmp_path), "--keep", "2", "--url", results_db.admin_url]) == 0
    kept = sorted(path.parent.name for path in tmp_path.glob(f"*/{backup.MANIFEST_NAME}"))
    assert len(kept) == 2
    assert sorted(path.name for path in tmp_path.iterdir()) == kept


def test_a_failed_backup_leaves_no_folder_and_no_password_in_its_message(
    results_db: ResultsDB, tmp_path: Path,
) -> None:
    secret = "not-the-password-" + uuid.uuid4().hex
    wrong = make_url(results_db.admin_url).set(password=secret, username="nobody_" + uuid.uuid4().hex[:6])
    with pytest.raises(Exception) as failure:  # noqa: PT011 - the driver's own error class
        backup.backup(wrong.render_as_string(hide_password=False), tmp_path)
    assert secret not in str(failure.value)
    assert list(tmp_path.iterdir()) == []


def test_a_backup_to_s3_restores_the_same_and_keeps_the_newest(
    results_db: ResultsDB, postgres: LocalPostgres, start_api: Callable[..., RunningAPI], s3_server: Any,
    s3_bucket: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    model_ids = _populate(results_db, models=2)
    key = results_db.key()
    client = s3_server.client()
    for stamp in ("20200101T000000000000Z", "20200102T000000000000Z"):  # two older backups under the prefix
        for name in (backup.MANIFEST_NAME, backup.DUMP_NAME):
            client.put_object(Bucket=s3_bucket, Key=f"aps/results/{stamp}/{name}", Body=b"old")
    client.put_object(Bucket=s3_bucket, Key="aps/results/20200103T000000000000Z/results.dump", Body=b"cut")
    # The command line reaches the S3 server through the AWS environment, as it would reach AWS.
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", S3_REGION)

    uri = f"s3://{s3_bucket}/aps/results"
    assert cli.main(["backup", uri, "--keep", "2", "--url", results_db.admin_url]) == 0
    out = capsys.readouterr().out
    assert f"removed old backup {uri}/20200101T000000000000Z" in out
    complete = backup_s3.backups_in(client, s3_bucket, "aps/results")
    assert complete[0] == "aps/results/20200102T000000000000Z"  # a backup cut short is never counted
    assert len(complete) == 2
    made = f"s3://{s3_bucket}/{complete[1]}"

    restored_url = postgres.create_database(f"restored_{uuid.uuid4().hex[:10]}")
    assert cli.main(["restore", made, "--url", restored_url]) == 0
    assert "match the manifest" in capsys.readouterr().out
    restored_api = start_api(database_url=SecretStr(_restored_reader_url(results_db, restored_url)))
    assert _answers(restored_api, key, model_ids) == _answers(start_api(), key, model_ids)

    assert cli.main(["restore", f"s3://{s3_bucket}/aps/results/none", "--url", restored_url]) == 2
    assert "cannot read manifest.json" in capsys.readouterr().err
