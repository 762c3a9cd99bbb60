"""The portfolio search table on real PostgreSQL: written by the loader with its model's rows, numbers read
through units, replaced on re-load, removed with the model."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine, select, text

from aps_results import migrate
from aps_results.loader import load_model_results
from aps_results.models import SCHEMA, PropertySearch
from aps_results.records import ObjectProperties, TreeNode, ViewRecord
from aps_results.registry import delete_model
from tests.fixtures.results import results_engine

VIEW = "view-3d"


def make_model(engine: Engine, project: str | None, sha: str) -> int:
    """A model whose source file carries `project` in its metadata."""
    with engine.begin() as conn:
        meta = {"project": project} if project is not None else {}
        file_id = conn.execute(text(
            f"INSERT INTO {SCHEMA}.files (pipeline, s3_bucket, s3_key, etag, size, metadata) "
            "VALUES ('p', 'b', :key, 'e', 1, CAST(:meta AS jsonb)) RETURNING id"),
            {"key": f"incoming/{sha}.ifc", "meta": json.dumps(meta)}).scalar_one()
        return conn.execute(text(
            f"INSERT INTO {SCHEMA}.models (region, sha256, source_file_id) VALUES ('US', :sha, :file) "
            "RETURNING id"), {"sha": sha, "file": file_id}).scalar_one()


def load(engine: Engine, model_id: int, values: dict[str, str]) -> None:
    """One object `Door 1` (external id d1) with these property values under category `Dimensions`."""
    tree = [TreeNode(view_guid=VIEW, object_id=1, name="Door 1", parent_object_id=None, depth=0)]
    props = [ObjectProperties(VIEW, 1, "d1", "Door 1", {"Dimensions": dict(values), "Top": "x"})]
    load_model_results(engine, model_id, views=[ViewRecord(guid=VIEW, name="3D", role="3d")], tree=tree,
                       properties=props)


def rows(engine: Engine, model_id: int) -> list[tuple[object, ...]]:
    query = (select(PropertySearch.project, PropertySearch.external_id, PropertySearch.object_name,
                    PropertySearch.category, PropertySearch.name, PropertySearch.value, PropertySearch.number)
             .where(PropertySearch.model_id == model_id).order_by(PropertySearch.name))
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]


@pytest.fixture
def engine(results_engine: Engine) -> Engine:
    return results_engine


@pytest.mark.parametrize(("value", "number"), [
    ("70 mm", 70.0), ("18 m^2", 18.0), ("-3.5e2 kN/m", -350.0), ("20 °C", 20.0), ("12.5 %", 12.5),
    ("42", 42.0), (".5", 0.5), ("1e400", None), ("3'-6\"", None), ("12 Main St", None), ("mm 70", None),
    ("C30/37", None), ("", None),
])
def test_numbers_are_read_through_one_unit_word(engine: Engine, value: str, number: float | None) -> None:
    model_id = make_model(engine, "alpha", "a" * 64)
    load(engine, model_id, {"Width": value})
    assert rows(engine, model_id)[1] == ("alpha", "d1", "Door 1", "Dimensions", "Width", value, number)


def test_the_loader_writes_replaces_and_delete_model_removes_the_search_rows(engine: Engine) -> None:
    first = make_model(engine, "alpha", "a" * 64)
    second = make_model(engine, None, "b" * 64)
    load(engine, first, {"Width": "70 mm", "Fire rating": "EI 60"})
    load(engine, second, {"Width": "90 mm"})
    assert rows(engine, first) == [
        ("alpha", "d1", "Door 1", "Dimensions", "Fire rating", "EI 60", None),
        ("alpha", "d1", "Door 1", None, "Top", "x", None),
        ("alpha", "d1", "Door 1", "Dimensions", "Width", "70 mm", 70.0),
    ]
    assert rows(engine, second)[1] == (None, "d1", "Door 1", "Dimensions", "Width", "90 mm", 90.0)

    load(engine, first, {"Width": "80 mm"})  # a re-load replaces the model's rows, and only its own
    assert rows(engine, first) == [("alpha", "d1", "Door 1", None, "Top", "x", None),
                                   ("alpha", "d1", "Door 1", "Dimensions", "Width", "80 mm", 80.0)]
    assert len(rows(engine, second)) == 2

    with engine.begin() as conn:
        delete_model(conn, first)
    assert rows(engine, first) == []
    assert len(rows(engine, second)) == 2


def test_the_migration_fills_the_search_table_from_the_models_already_loaded(engine: Engine) -> None:
    model_id = make_model(engine, "alpha", "a" * 64)
    load(engine, model_id, {"Width": "70 mm"})
    before = rows(engine, model_id)
    url = engine.url.render_as_string(hide_password=False)
    migrate.downgrade(url, "0010-1")
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT to_regclass('{SCHEMA}.property_search')")).scalar() is None
    migrate.upgrade(url)
    assert rows(engine, model_id) == before


def test_purging_a_models_results_removes_its_search_rows(engine: Engine) -> None:
    """keep_versions (aps_results.retention) removes a model's results: its search rows go with them."""
    from aps_results.retention import purge_model_results

    kept, purged = make_model(engine, "alpha", "a" * 64), make_model(engine, "alpha", "b" * 64)
    load(engine, kept, {"Width": "70 mm"})
    load(engine, purged, {"Width": "80 mm"})
    with engine.begin() as conn:
        purge_model_results(conn, purged)
    assert rows(engine, purged) == []
    assert len(rows(engine, kept)) == 2
