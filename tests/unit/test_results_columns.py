"""A results column has one home, its model: the loader's records, staging tables and INSERTs follow it."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import Boolean, Column, MetaData, Table, Text, text

from aps_results import loader
from aps_results.loader import PROPERTY_COLUMNS
from aps_results.models import (
    Derivative,
    ModelObject,
    ModelView,
    Property,
    Thumbnail,
    pg_default,
    pg_type,
)
from aps_results.records import (
    DerivativeNode,
    ThumbnailImage,
    TreeNode,
    ViewRecord,
    loaded_columns,
    record_type,
)

# Each table the loader replaces per model, the staging spec that fills it and the record it takes.
REPLACED = [
    (ModelView.__table__, loader._VIEWS, ViewRecord),
    (ModelObject.__table__, loader._OBJECTS, TreeNode),
    (Derivative.__table__, loader._DERIVATIVES, DerivativeNode),
    (Thumbnail.__table__, loader._THUMBNAILS, ThumbnailImage),
]
IDS = [table.name for table, _, _ in REPLACED]


@pytest.mark.parametrize(("table", "staging", "record"), REPLACED, ids=IDS)
def test_staging_and_records_carry_every_loaded_column_of_the_table(
    table: Table, staging: loader._Staging, record: type
) -> None:
    expected = [(column.name, pg_type(column)) for column in table.columns
                if column.name != "model_id" and column.identity is None]
    assert [(column.name, pg_type(column)) for column in loaded_columns(table)] == expected
    assert list(staging.columns) == expected
    assert [field.name for field in dataclasses.fields(record)] == [name for name, _ in expected]
    assert staging.create() == (f"CREATE TEMP TABLE {staging.name} ("
                                + ", ".join(f"{name} {sql_type}" for name, sql_type in expected)
                                + ") ON COMMIT DROP")
    assert f"INSERT INTO aps.{table.name} (model_id, {', '.join(name for name, _ in expected)}) " \
        in staging.insert()


def test_every_table_the_loader_replaces_is_staged_from_its_model() -> None:
    targets = {staging.table.name for staging in loader._STAGING if staging.target}
    assert targets == set(IDS)
    assert {staging.name for staging in loader._STAGING} == {staging.name for _, staging, _ in REPLACED} | {
        loader._EXTERNAL_IDS.name}


def test_properties_copy_columns_are_the_models() -> None:
    table = Property.__table__
    assert [(name, copy_type) for name, _, copy_type in PROPERTY_COLUMNS] == [
        (column.name, pg_type(column)) for column in table.columns]
    assert [ddl.endswith("NOT NULL") for _, ddl, _ in PROPERTY_COLUMNS] == [
        not column.nullable for column in table.columns]
    # Property rows are computed (flattened from APS's nested dict), so the flattening names what it writes:
    # every column. A new properties column fails here until `_property_rows` computes its value.
    assert list(loader._PROPERTY_ROW) == list(table.columns.keys())


def test_server_defaults_fill_what_a_record_leaves_out() -> None:
    view = ViewRecord(guid="g")
    assert view.is_master_view is None  # None: the column's server default
    assert "coalesce(s.is_master_view, false)" in loader._VIEWS.insert()
    assert "coalesce(s.depth, 0)" in loader._OBJECTS.insert()
    assert "coalesce(s.fetched_at, now())" in loader._THUMBNAILS.insert()
    with pytest.raises(TypeError):
        TreeNode(view_guid="v")  # type: ignore[call-arg]  # object_id is NOT NULL without a default
    with pytest.raises(TypeError):
        TreeNode("v", 1)  # type: ignore[misc]  # keyword-only: a column moved in the model cannot shift values


def extended_views() -> Table:
    """aps.model_views with two columns more, as a model change would add them."""
    table = ModelView.__table__.to_metadata(MetaData())
    table.append_column(Column("note", Text(), nullable=True))
    table.append_column(Column("pinned", Boolean(), nullable=False, server_default=text("true")))
    return table


def test_a_column_added_to_the_model_is_carried_without_other_changes() -> None:
    table = extended_views()
    record = record_type("ViewRecord", table, "extended")
    staging = loader._Staging("stage_views", table, distinct_on=("guid",))
    assert [field.name for field in dataclasses.fields(record)][-2:] == ["note", "pinned"]
    assert staging.create().endswith("is_master_view boolean, note text, pinned boolean) ON COMMIT DROP")
    assert "s.note, coalesce(s.pinned, true) FROM stage_views s" in staging.insert()
    assert pg_default(table.columns["pinned"]) == "true"
    row = staging.row(record(guid="g", name="3D", note="hello"))
    assert row == ("g", "3D", None, None, "hello", None)
