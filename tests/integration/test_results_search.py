"""What portfolio search reads, on real PostgreSQL: the loader's property rows with numbers read through
units, replaced on re-load, removed with the model; a hit's project and object name joined at query time."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine, select, text

from aps_api.queries import SearchFilters, _search_sql
from aps_results.loader import load_model_results
from aps_results.models import SCHEMA, Property
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
    """(project, external id, object name, category, name, value, number) of the model's rows as search
    finds them: by name, with the object's name joined at query time; the model's project and the
    row's number beside them."""
    with engine.connect() as conn:
        names = conn.execute(select(Property.name).where(Property.model_id == model_id)
                             .order_by(Property.name)).scalars().all()
        hits = []
        for name in names:
            statement, params = _search_sql(SearchFilters(name=name), None)
            hits += [row for row in conn.execute(text(statement), {**params, "limit": 100})
                     if row.model_id == model_id]
        numbers = dict(conn.execute(select(Property.row_no, Property.value_num)
                                    .where(Property.model_id == model_id)).tuples().all())
        project = conn.execute(text(
            f"SELECT f.metadata->>'project' FROM {SCHEMA}.models m JOIN {SCHEMA}.files f "
            "ON f.id = m.source_file_id WHERE m.id = :m"), {"m": model_id}).scalar()
    return [(project, row.external_id, row.object_name, row.category, row.name, row.value,
             numbers[row.row_no])
            for row in hits]


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


def test_the_loader_writes_replaces_and_delete_model_removes_what_search_finds(engine: Engine) -> None:
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


def test_substrings_and_exact_values_are_found_in_values_of_any_length(engine: Engine) -> None:
    """The trigram index is not partial, and an exact value past the btree's bound is still compared."""
    model_id = make_model(engine, "alpha", "a" * 64)
    long_value = "x" * 10_000 + " needle " + "y" * 3_000  # far past the (name, value) index's bound
    load(engine, model_id, {"Note": long_value})
    with engine.connect() as conn:
        for filters in (SearchFilters(name="Note", contains="needle"),
                        SearchFilters(name="Note", value=long_value)):
            statement, params = _search_sql(filters, None)
            found = conn.execute(text(statement), {**params, "limit": 10}).all()
            assert [(row.model_id, row.object_name, row.value) for row in found] == [
                (model_id, "Door 1", long_value)]
