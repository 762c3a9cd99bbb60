"""What operators read: map index labels, notification rules and messages, the `notify:` entry."""

from __future__ import annotations

import pytest

from aps_pipeline.config import NotifyConfig, parse_pipelines
from aps_pipeline.labels import MAX_LABEL_CHARS, files_label
from aps_pipeline.notify import due_events, run_message


def test_labels_name_the_files_and_count_the_rest() -> None:
    assert files_label(["incoming/tower/a.ifc"]) == "a.ifc"
    assert files_label(["incoming/a.ifc", "b.ifc"]) == "a.ifc, b.ifc"
    assert files_label(["in/a.ifc", "in/b.ifc", "in/c.ifc", "in/d.obj", "in/e.obj"]) == "a.ifc, b.ifc +3 more"
    assert files_label([]) == ""
    long = files_label([f"in/{'x' * 300}.ifc"])
    assert len(long) == MAX_LABEL_CHARS
    assert long.endswith("…")


def test_notifications_are_due_for_the_events_the_pipeline_asks_for() -> None:
    everything = NotifyConfig(email=["ops@example.test"])
    assert due_events(everything, run_failed=False, counts={"failed": 0, "rejected": 0}) == []
    assert due_events(everything, run_failed=False, counts={"failed": 1, "rejected": 2}) == [
        "files_failed", "files_rejected"]
    assert due_events(everything, run_failed=True, counts=None) == ["run_failed"]
    only_failures = NotifyConfig(email=["ops@example.test"], on=["run_failed", "files_failed"])
    assert due_events(only_failures, run_failed=False, counts={"failed": 0, "rejected": 5}) == []


def test_the_message_carries_the_summary_and_the_link_escaped() -> None:
    message = run_message("aps_ingest", "manual__<b>", ["files_failed"],
                          "summary: discovered=3 loaded=2 rejected=0 failed=1 lost=0",
                          "https://airflow.example.test/aps/runs/aps_ingest/manual__%3Cb%3E")
    assert message.subject == "[aps_ingest] files failed: manual__<b>"
    assert "summary: discovered=3 loaded=2 rejected=0 failed=1 lost=0" in message.text
    assert "run page: https://airflow.example.test/aps/runs/aps_ingest/manual__%3Cb%3E" in message.text
    assert "<b>" not in message.html
    assert "manual__&lt;b&gt;" in message.html
    assert 'href="https://airflow.example.test/aps/runs/aps_ingest/manual__%3Cb%3E"' in message.html


@pytest.mark.parametrize(("value", "expected"), [
    ("", []), ("ops@example.test", ["ops@example.test"]),
    ("a@example.test, b@example.test", ["a@example.test", "b@example.test"]),
    (["a@example.test"], ["a@example.test"]),
])
def test_notify_recipients_come_from_the_file_or_the_environment(value: object, expected: list[str]) -> None:
    document = {"pipelines": [{"name": "p", "landing": {"bucket": "landing"}, "aps": {"bucket_key": "bkt"},
                               "notify": {"email": value, "webhook_conn_id": ""}}]}
    notify = parse_pipelines(document, source="test", env={})[0].notify
    assert notify.email == expected
    assert notify.webhook_conn_id is None
    assert notify.enabled is bool(expected)


def test_notify_rejects_unknown_events() -> None:
    document = {"pipelines": [{"name": "p", "landing": {"bucket": "landing"}, "aps": {"bucket_key": "bkt"},
                               "notify": {"on": ["run_failed", "sometimes"]}}]}
    with pytest.raises(ValueError, match=r"notify\.on\.1"):
        parse_pipelines(document, source="test", env={})
