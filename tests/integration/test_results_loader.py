"""The per-model loader on real PostgreSQL: counts, idempotent re-loads, atomic replaces, indexed queries."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Column, Connection, Engine, MetaData, Select, Text, func, select, text

from aps_results import loader
from aps_results.loader import LoadStats, ModelNotFound, load_model_results
from aps_results.models import SCHEMA, Model, ModelObject, ModelView, Property, Thumbnail
from aps_results.records import ObjectProperties, ThumbnailImage, TreeNode, ViewRecord, record_type
from tests.fixtures.results import results_engine

VIEW = "view-3d"
WAIT = 60  # seconds: a deadline for each hand-off between threads, not a timing assertion
MANIFEST = {"derivatives": [{"name": "m.ifc", "outputType": "svf2", "status": "success", "children": [
    {"guid": VIEW, "type": "geometry", "role": "3d", "name": "3D"},
    {"guid": "thumb", "type": "resource", "role": "thumbnail", "mime": "image/png", "urn": "urn:thumb"},
]}]}


def make_model(engine: Engine, sha: str = "a" * 64) -> int:
    with engine.begin() as conn:
        return conn.execute(text(f"INSERT INTO {SCHEMA}.models (region, sha256) VALUES ('US', :sha) "
                                 "RETURNING id"), {"sha": sha}).scalar_one()


def tree(objects: int) -> Iterator[TreeNode]:
    yield TreeNode(view_guid=VIEW, object_id=1, name="Model", parent_object_id=None, depth=0)
    for object_id in range(2, objects + 2):
        yield TreeNode(view_guid=VIEW, object_id=object_id, name=f"Wall [{object_id}]", parent_object_id=1,
                       depth=1)


def properties(objects: int, tag: str = "v1") -> Iterator[ObjectProperties]:
    """Four property rows per object: three in categories, one uncategorised."""
    for object_id in range(2, objects + 2):
        yield ObjectProperties(VIEW, object_id, f"ext-{object_id}", f"Wall [{object_id}]", {
            "Dimensions": {"Length": str(object_id * 10), "Width": "200 mm"},
            "Identity Data": {"Mark": f"{tag}-{object_id}"},
            "Comments": None,
        })


def counts(conn: Connection, model_id: int) -> tuple[int, int]:
    objects = conn.execute(select(func.count()).where(ModelObject.model_id == model_id)).scalar_one()
    props = conn.execute(select(func.count()).where(Property.model_id == model_id)).scalar_one()
    return objects, props


def load(engine: Engine, model_id: int, objects: int, tag: str = "v1", **kwargs: Any) -> LoadStats:
    return load_model_results(
        engine, model_id, views=[ViewRecord(guid=VIEW, name="3D", role="3d", is_master_view=True)],
        tree=tree(objects),
        properties=properties(objects, tag), manifest=MANIFEST,
        thumbnail=ThumbnailImage(png=b"\x89PNG fake", width=100, height=100), **kwargs,
    )


def test_load_counts_and_values(results_engine: Engine) -> None:
    model_id = make_model(results_engine)
    stats = load(results_engine, model_id, 50)
    assert (stats.views, stats.objects, stats.properties, stats.derivatives) == (1, 51, 200, 3)
    assert stats.thumbnail

    with results_engine.connect() as conn:
        assert counts(conn, model_id) == (51, 200)
        rows = conn.execute(
            select(Property.category, Property.name, Property.value, Property.value_num)
            .where(Property.model_id == model_id, Property.external_id == "ext-7").order_by(Property.name)
        ).all()
        assert rows == [(None, "Comments", None, None), ("Dimensions", "Length", "70", 70.0),
                        ("Identity Data", "Mark", "v1-7", None), ("Dimensions", "Width", "200 mm", 200.0)]
        # The tree carried no external ids: the loader filled them from the properties (not for the root).
        assert conn.execute(select(ModelObject.external_id, ModelObject.parent_object_id).where(
            ModelObject.model_id == model_id, ModelObject.object_id == 7)).one() == ("ext-7", 1)
        assert conn.execute(select(ModelObject.external_id).where(
            ModelObject.model_id == model_id, ModelObject.object_id == 1)).scalar_one() is None
        assert conn.execute(select(Thumbnail.png).where(Thumbnail.model_id == model_id)).scalar_one() \
            == b"\x89PNG fake"
        assert conn.execute(select(Model.loaded_at).where(Model.id == model_id)).scalar_one() is not None


def test_reload_is_idempotent_and_replaces_only_that_model(results_engine: Engine) -> None:
    model_id, other_id = make_model(results_engine), make_model(results_engine, "b" * 64)
    load(results_engine, other_id, 5)
    load(results_engine, model_id, 30)
    with results_engine.connect() as conn:
        first = conn.execute(text(f"SELECT * FROM {SCHEMA}.properties WHERE model_id = :m ORDER BY 3, 5, 6"),
                             {"m": model_id}).all()

    again = load(results_engine, model_id, 30)
    assert (again.objects, again.properties, again.derivatives) == (31, 120, 3)
    with results_engine.connect() as conn:
        assert conn.execute(text(f"SELECT * FROM {SCHEMA}.properties WHERE model_id = :m ORDER BY 3, 5, 6"),
                            {"m": model_id}).all() == first
        assert counts(conn, model_id) == (31, 120)
        assert counts(conn, other_id) == (6, 20)
        assert conn.execute(text(f"SELECT count(*) FROM {SCHEMA}.derivatives WHERE model_id = :m"),
                            {"m": model_id}).scalar() == 3

    smaller = load(results_engine, model_id, 10, tag="v2")
    assert (smaller.objects, smaller.properties) == (11, 40)
    with results_engine.connect() as conn:
        assert counts(conn, model_id) == (11, 40)
        assert counts(conn, other_id) == (6, 20)


def test_unknown_model_is_a_clear_error_and_writes_nothing(results_engine: Engine) -> None:
    with pytest.raises(ModelNotFound, match="model 999"):
        load(results_engine, 999, 3)
    with results_engine.connect() as conn:
        assert counts(conn, 999) == (0, 0)


def test_a_failing_input_leaves_the_previous_load_in_place(results_engine: Engine) -> None:
    model_id = make_model(results_engine)
    load(results_engine, model_id, 20)

    def broken() -> Iterator[ObjectProperties]:
        yield from properties(5, "v2")
        raise RuntimeError("APS connection dropped")

    with pytest.raises(RuntimeError, match="connection dropped"):
        load_model_results(results_engine, model_id, tree=tree(5), properties=broken())
    with results_engine.connect() as conn:
        assert counts(conn, model_id) == (21, 80)


def test_readers_see_the_old_rows_or_the_new_rows_never_a_mix(results_engine: Engine) -> None:
    """A reader looks while the loader is paused mid-COPY and again just before its commit."""
    model_id = make_model(results_engine)
    load(results_engine, model_id, 40)  # old: 41 objects, 160 property rows

    mid_copy, before_commit = threading.Event(), threading.Event()
    resume_copy, resume_commit = threading.Event(), threading.Event()
    seen: dict[str, tuple[int, int]] = {}
    errors: list[BaseException] = []

    def slow_properties() -> Iterator[ObjectProperties]:
        for index, item in enumerate(properties(100, "v2")):
            if index == 50:
                mid_copy.set()
                assert resume_copy.wait(WAIT)
            yield item

    def hold(_: Connection) -> None:
        before_commit.set()
        assert resume_commit.wait(WAIT)

    def loader() -> None:
        try:
            load_model_results(results_engine, model_id, tree=tree(100), properties=slow_properties(),
                               before_commit=hold)
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=loader)
    thread.start()
    try:
        assert mid_copy.wait(WAIT)
        with results_engine.connect() as reader:
            seen["mid copy"] = counts(reader, model_id)
        resume_copy.set()
        assert before_commit.wait(WAIT)
        with results_engine.connect() as reader:
            seen["before commit"] = counts(reader, model_id)
            marks = reader.execute(select(func.count()).where(Property.model_id == model_id,
                                                              Property.value.like("v2-%"))).scalar_one()
            assert marks == 0
    finally:
        resume_copy.set()
        resume_commit.set()
        thread.join(WAIT)
    assert errors == []
    assert seen == {"mid copy": (41, 160), "before commit": (41, 160)}
    with results_engine.connect() as reader:
        assert counts(reader, model_id) == (101, 400)


def plan_of(conn: Connection, query: Select[Any]) -> str:
    compiled = query.compile(conn, compile_kwargs={"literal_binds": True})
    return "\n".join(conn.execute(text(f"EXPLAIN {compiled}")).scalars())


@pytest.mark.parametrize("reloads", [0, 1], ids=["first load", "re-load"])
def test_property_queries_use_the_indexes(results_engine: Engine, reloads: int) -> None:
    model_id, other_id = make_model(results_engine), make_model(results_engine, "b" * 64)
    load(results_engine, other_id, 50)
    for _ in range(reloads + 1):
        load(results_engine, model_id, 300)
    by_name_value = select(Property.external_id).where(Property.model_id == model_id,
                                                       Property.name_value_is("Mark", "v1-42"))
    by_external_id = select(Property.name).where(Property.model_id == model_id,
                                                 Property.external_id == "ext-42")
    across_models = select(Property.model_id).where(Property.name_value_is("Mark", "v1-42"))
    with results_engine.connect() as conn:
        conn.execute(text(f"ANALYZE {SCHEMA}.properties"))
        conn.execute(text("SET enable_seqscan = off"))
        plan = plan_of(conn, by_name_value)
        assert "ix_properties_name_value_model_id_row_no" in plan, plan
        assert conn.execute(by_name_value).scalars().all() == ["ext-42"]
        plan = plan_of(conn, by_external_id)
        assert "ix_properties_model_id_external_id" in plan, plan
        assert sorted(conn.execute(by_external_id).scalars()) == ["Comments", "Length", "Mark", "Width"]
        plan = plan_of(conn, across_models)
        assert "ix_properties_name_value_model_id_row_no" in plan, plan
        assert sorted(conn.execute(across_models).scalars()) == sorted([model_id, other_id])


def test_values_too_long_for_the_index_still_load_and_match(results_engine: Engine) -> None:
    model_id = make_model(results_engine)
    huge = "x" * 10_000 + "".join(chr(0x4E00 + i) for i in range(2000))  # well past the btree entry limit
    load_model_results(results_engine, model_id, properties=[
        ObjectProperties(VIEW, 2, "ext-2", "Note", {"Text": {"Body": huge}}),
    ])
    with results_engine.connect() as conn:
        found = conn.execute(select(Property.external_id).where(Property.name_value_is("Body", huge)))
        assert found.scalars().all() == ["ext-2"]


def test_load_inside_a_callers_transaction_commits_with_it(results_engine: Engine) -> None:
    model_id = make_model(results_engine)
    with results_engine.connect() as conn:
        with conn.begin():
            load_model_results(conn, model_id, tree=tree(3), properties=properties(3))
            load_model_results(conn, model_id, tree=tree(4), properties=properties(4))  # same transaction
        assert counts(conn, model_id) == (5, 16)



class WatchedProperties(dict):  # type: ignore[type-arg]
    """A property dict that a weak reference can watch (a plain dict cannot)."""


class WatchedNode(TreeNode):
    """A tree node that a weak reference can watch (the slotted record cannot)."""


class Watch:
    """Counts the items handed to the loader that are still alive, and the most ever alive at once."""

    def __init__(self) -> None:
        self.alive = self.peak = self.pulled = 0

    def _release(self) -> None:
        self.alive -= 1

    def __call__(self, item: Any) -> Any:
        self.pulled += 1
        self.alive += 1
        self.peak = max(self.peak, self.alive)
        weakref.finalize(item, self._release)
        return item


def test_inputs_are_consumed_as_they_are_written_not_collected(results_engine: Engine) -> None:
    """The loader pulls the tree and the properties an item at a time and keeps none of them: however many
    have gone by, only a handful are alive at any pull (a loader that collected them would hold all)."""
    model_id = make_model(results_engine)
    objects = 20_000
    tree_watch, properties_watch = Watch(), Watch()
    watched_tree = (tree_watch(WatchedNode(view_guid=n.view_guid, object_id=n.object_id, name=n.name,
                                           parent_object_id=n.parent_object_id, depth=n.depth))
                    for n in tree(objects))
    watched_properties = (
        ObjectProperties(p.view_guid, p.object_id, p.external_id, p.name,
                         properties_watch(WatchedProperties(p.properties)))
        for p in properties(objects)
    )

    stats = load_model_results(results_engine, model_id, views=[ViewRecord(guid=VIEW)], tree=watched_tree,
                               properties=watched_properties)

    assert (stats.objects, stats.properties) == (objects + 1, objects * 4)
    assert (tree_watch.pulled, properties_watch.pulled) == (objects + 1, objects)
    assert tree_watch.peak <= 10
    assert properties_watch.peak <= 10
    assert tree_watch.alive == properties_watch.alive == 0


def test_a_column_added_to_the_model_is_loaded_by_the_staging_made_from_it(results_engine: Engine) -> None:
    """The model (and the database, as its migration would) gains a column; the staging spec and record
    made from the table carry it into the database with no other change."""
    model_id = make_model(results_engine)
    load(results_engine, model_id, 3)
    with results_engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE {SCHEMA}.model_views ADD COLUMN note text"))
    table = ModelView.__table__.to_metadata(MetaData())
    table.append_column(Column("note", Text(), nullable=True))
    record = record_type("ViewRecord", table, "a view with a note")
    staging = loader._Staging("stage_views", table, distinct_on=("guid",))

    with results_engine.begin() as conn:
        pg = conn.connection.driver_connection
        pg.execute(staging.create())
        loader._copy(pg, staging, [staging.row(record(guid=VIEW, name="3D", note="hello"))])
        for statement in (staging.delete(), staging.insert()):
            pg.execute(statement, {"model_id": model_id})
    with results_engine.connect() as conn:
        assert conn.execute(text(f"SELECT guid, name, role, is_master_view, note FROM {SCHEMA}.model_views "
                                 "WHERE model_id = :m"), {"m": model_id}).all() == [
            (VIEW, "3D", None, False, "hello")]


def test_a_load_without_a_thumbnail_keeps_the_stored_one_and_a_new_one_replaces_it(
    results_engine: Engine,
) -> None:
    model_id = make_model(results_engine)
    load(results_engine, model_id, 3)  # with a thumbnail
    stats = load_model_results(results_engine, model_id, tree=tree(3), properties=properties(3))
    assert not stats.thumbnail
    query = select(Thumbnail.png, Thumbnail.width, Thumbnail.height).where(Thumbnail.model_id == model_id)
    with results_engine.connect() as conn:
        assert conn.execute(query).all() == [(b"\x89PNG fake", 100, 100)]
    load_model_results(results_engine, model_id, thumbnail=ThumbnailImage(png=b"\x89PNG new", width=200))
    with results_engine.connect() as conn:
        assert conn.execute(query).all() == [(b"\x89PNG new", 200, None)]
        assert conn.execute(select(func.count()).select_from(Thumbnail)).scalar_one() == 1
