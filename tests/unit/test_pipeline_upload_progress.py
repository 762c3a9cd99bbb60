"""Where a model's upload keeps its progress (aps_pipeline.upload.progress_store): in the model's row when
the upload has parts to resume, in memory for a one-part upload (nothing to resume, three transactions
fewer per file)."""

from __future__ import annotations

from pydantic import SecretStr
from sqlalchemy import create_engine

from aps_client import APSClient, APSConfig
from aps_pipeline.upload import ModelUploadStore, progress_store

MIB = 1024 * 1024


def test_only_an_upload_of_several_parts_keeps_its_progress_in_the_models_row() -> None:
    config = APSConfig(client_id="id", client_secret=SecretStr("secret"), base_url="http://127.0.0.1:9",
                       upload_part_size=5 * MIB)
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none")  # never connected here
    with APSClient(config) as aps:
        assert progress_store(aps, engine, 1, "holder", 20_000) is None
        assert progress_store(aps, engine, 1, "holder", 5 * MIB) is None  # exactly one part
        assert isinstance(progress_store(aps, engine, 1, "holder", 5 * MIB + 1), ModelUploadStore)
        assert isinstance(progress_store(aps, engine, 1, "holder", None), ModelUploadStore)  # size unknown
