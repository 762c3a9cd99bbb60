"""The S3 client of the ingest's tasks (aps_ingest_tasks.connections): the Amazon provider's own user agent
(`Caller/<operator class>`), found without reading the source of every frame on the stack."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aps_ingest_tasks.connections import caller_class_name, s3_client


class UploadOperator:
    def execute(self, work: Any) -> Any:
        return work()


class Sensor:
    def poke(self) -> str:
        return caller_class_name("poke")


def test_the_caller_is_the_class_whose_method_is_running() -> None:
    assert UploadOperator().execute(caller_class_name) == "UploadOperator"
    assert UploadOperator().execute(Sensor().poke) == "Sensor"  # the nearest frame of that name
    assert caller_class_name("no_such_method") == "Unknown"


def test_the_s3_client_names_its_caller_in_the_user_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    connection = {"conn_type": "aws", "login": "key-id", "password": "secret-key",
                  "extra": {"region_name": "eu-west-1", "endpoint_url": "http://127.0.0.1:9"}}
    monkeypatch.setenv("AIRFLOW_CONN_LANDING_TEST", json.dumps(connection))
    client = UploadOperator().execute(lambda: s3_client("landing_test"))
    assert "Caller/UploadOperator" in client.meta.config.user_agent_extra
    assert client.meta.region_name == "eu-west-1"
    assert client.meta.endpoint_url == "http://127.0.0.1:9"


def test_an_s3_client_after_the_warm_up_reads_no_botocore_model_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aps_landing.s3 import shared_botocore_loader, warm_s3_loader

    warm_s3_loader()  # what the worker does before it forks task processes
    read: list[str] = []
    json_files = type(shared_botocore_loader().file_loader)  # botocore's JSONFileLoader
    load_file = json_files.load_file

    def counted(self: Any, file_path: str) -> Any:
        read.append(file_path)
        return load_file(self, file_path)

    monkeypatch.setattr(json_files, "load_file", counted)
    connection = {"conn_type": "aws", "login": "key-id", "password": "secret-key",
                  "extra": {"region_name": "eu-west-1", "endpoint_url": "http://127.0.0.1:9"}}
    monkeypatch.setenv("AIRFLOW_CONN_LANDING_TEST", json.dumps(connection))
    client = UploadOperator().execute(lambda: s3_client("landing_test"))
    assert client.meta.service_model.service_name == "s3"
    assert read == []  # the S3 model and its endpoint rules came from the shared loader
