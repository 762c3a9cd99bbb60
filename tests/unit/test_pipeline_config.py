"""The pipelines file: parsing, defaults, environment references and error messages."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aps_landing.local import LocalLanding
from aps_landing.s3 import S3Landing
from aps_pipeline.config import (
    DEFAULT_PIPELINES_FILE,
    PIPELINES_FILE_ENV,
    PipelineConfigError,
    get_pipeline,
    load_pipelines,
    pipelines_file,
)

MINIMAL = """
pipelines:
  - name: {name}
    landing: {{bucket: my-landing, prefix: /in/coming}}
    aps: {{bucket_key: my-aps-bucket}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipelines.yaml"
    path.write_text(text)
    return path


def test_shipped_file_has_aps_ingest_with_local_defaults() -> None:
    (pipeline,) = load_pipelines(DEFAULT_PIPELINES_FILE, env={})
    assert pipeline.name == "aps_ingest"
    assert pipeline.schedule == "@hourly"
    assert pipeline.landing.bucket == "landing"
    assert pipeline.landing.prefix == "incoming/"
    assert pipeline.landing.quarantine_prefix == "quarantine/"
    assert pipeline.aps.region == "US"
    assert pipeline.max_file_size == 2 * 1024**3
    assert pipeline.job_formats() == [{"type": "svf2", "views": ["2d", "3d"]}, {"type": "thumbnail"}]
    assert pipeline.results_conn_id == "aps_results"


def test_environment_overrides_the_shipped_values() -> None:
    env = {
        "APS_LANDING_BUCKET": "prod-landing",
        "APS_REGION": "emea",
        "APS_MAX_FILE_SIZE": "500MB",
        "APS_INGEST_SCHEDULE": "@daily",
    }
    pipeline = get_pipeline("aps_ingest", DEFAULT_PIPELINES_FILE, env=env)
    assert pipeline.landing.bucket == "prod-landing"
    assert pipeline.aps.region == "EMEA"
    assert pipeline.max_file_size == 500 * 1000**2
    assert pipeline.schedule == "@daily"


def test_env_var_selects_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.format(name="other_ingest"))
    assert pipelines_file({PIPELINES_FILE_ENV: str(path)}) == path
    assert pipelines_file({}) == DEFAULT_PIPELINES_FILE
    (pipeline,) = load_pipelines(env={PIPELINES_FILE_ENV: str(path)})
    assert pipeline.name == "other_ingest"
    assert pipeline.landing.prefix == "in/coming/"  # normalised folder form
    assert pipeline.schedule == "@hourly"


def test_defaults_merge_under_entries(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
defaults:
  owner: team-a
  aps: {region: AUS, policy: persistent}
pipelines:
  - name: one
    landing: {bucket: bucket-one}
    aps: {bucket_key: one-bucket}
  - name: two
    owner: team-b
    landing: {bucket: bucket-two}
    aps: {bucket_key: two-bucket, region: EMEA}
""",
    )
    one, two = load_pipelines(path, env={})
    assert (one.owner, one.aps.region, one.aps.policy) == ("team-a", "AUS", "persistent")
    assert (two.owner, two.aps.region, two.aps.policy) == ("team-b", "EMEA", "persistent")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "pipelines:\n  - name: broken\n    aps: {bucket_key: abc}\n",
            "pipeline 'broken' (entry 1): landing: Field",
        ),
        (
            "pipelines:\n  - name: typo\n    landing: {bucket: abc}\n    aps: {bucket_key: abc}\n"
            "    shedule: x\n",
            "pipeline 'typo' (entry 1): shedule: Extra inputs are not permitted",
        ),
        (
            "pipelines:\n  - name: bad key\n    landing: {bucket: abc}\n    aps: {bucket_key: abc}\n",
            "name: Value error, must be a valid DAG id",
        ),
        (
            "pipelines:\n  - name: upper\n    landing: {bucket: abc}\n    aps: {bucket_key: UPPER}\n",
            "aps.bucket_key",
        ),
        (
            "pipelines:\n  - name: q\n    landing: {bucket: abc, prefix: q/in, quarantine_prefix: q}\n"
            "    aps: {bucket_key: abc}\n",
            "prefix must not lie inside quarantine_prefix",
        ),
        (
            "pipelines:\n  - name: poll\n    landing: {bucket: abc}\n    aps: {bucket_key: abc}\n"
            "    poll_interval: 30\n    poll_max_interval: 5\n",
            "poll_max_interval must be at least poll_interval",
        ),
        (
            'pipelines:\n  - name: env\n    landing: {bucket: "${NOPE_NOT_SET}"}\n'
            "    aps: {bucket_key: abc}\n",
            "landing.bucket: environment variable NOPE_NOT_SET is not set",
        ),
        (
            "pipelines:\n  - name: both\n    landing: {bucket: abc, path: /data/landing}\n"
            "    aps: {bucket_key: abc}\n",
            "pipeline 'both' (entry 1): landing: Value error, name either `bucket` (an S3 bucket) or `path`",
        ),
        (
            "pipelines:\n  - name: neither\n    landing: {prefix: in/}\n    aps: {bucket_key: abc}\n",
            "pipeline 'neither' (entry 1): landing: Value error, name either `bucket`",
        ),
        (
            "pipelines:\n  - name: relative\n    landing: {path: data/landing}\n    aps: {bucket_key: abc}\n",
            "landing.path: Value error, must be an absolute folder path",
        ),
        ("pipelines: {}\n", "expected a mapping with a `pipelines:` list"),
        ("pipelines: [}\n", "not valid YAML"),
        (MINIMAL.format(name="dup") + MINIMAL.format(name="dup").split("pipelines:")[1], "must be unique"),
    ],
)
def test_errors_name_the_file_and_the_entry(tmp_path: Path, body: str, message: str) -> None:
    path = write(tmp_path, body)
    with pytest.raises(PipelineConfigError) as caught:
        load_pipelines(path, env={})
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_a_landing_is_an_s3_bucket_by_default_or_a_local_folder(tmp_path: Path) -> None:
    body = MINIMAL.format(name="in_s3") + (
        "  - name: in_folder\n"
        f"    landing: {{path: {tmp_path}, prefix: incoming/}}\n"
        "    aps: {bucket_key: abc}\n"
    )
    in_s3, in_folder = load_pipelines(write(tmp_path, body), env={})
    assert (in_s3.landing.kind, in_folder.landing.kind) == ("s3", "local")
    assert in_folder.landing.prefix == "incoming/"

    clients: list[str] = []

    def s3_client() -> str:  # the S3 client is made only for a bucket
        clients.append("made")
        return "a boto3 client"

    folder = in_folder.landing.open(s3_client)
    assert isinstance(folder, LocalLanding)
    assert folder.location == str(tmp_path)
    assert clients == []
    bucket = in_s3.landing.open(s3_client)
    assert isinstance(bucket, S3Landing)
    assert bucket.location == in_s3.landing.bucket
    assert clients == ["made"]


def test_an_edited_file_is_read_again_even_at_the_same_size_and_time(tmp_path: Path) -> None:
    # The parsed file is kept by its content (a task reads it several times): an edit is seen at once.
    path = write(tmp_path, MINIMAL.format(name="first_a"))
    stat = path.stat()
    assert [p.name for p in load_pipelines(path, env={})] == ["first_a"]
    path.write_text(MINIMAL.format(name="other_b"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    (again,) = load_pipelines(path, env={})
    assert again.name == "other_b"
    again.tags.append("changed")  # each caller gets its own document and configs
    assert load_pipelines(path, env={})[0].tags == ["aps"]


def test_missing_file_and_unknown_pipeline(tmp_path: Path) -> None:
    with pytest.raises(PipelineConfigError, match="cannot read the pipelines file"):
        load_pipelines(tmp_path / "absent.yaml")
    path = write(tmp_path, MINIMAL.format(name="only_one"))
    with pytest.raises(PipelineConfigError, match=r"no pipeline named 'other' \(have \['only_one'\]\)"):
        get_pipeline("other", path, env={})


def test_allowed_extensions_are_normalised(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.format(name="x") + "    allowed_extensions: ['.IFC', obj]\n")
    (pipeline,) = load_pipelines(path, env={})
    assert pipeline.allowed_extensions == ["ifc", "obj"]


def test_load_attempts_default_to_three_and_can_be_set(tmp_path: Path) -> None:
    (default,) = load_pipelines(write(tmp_path, MINIMAL.format(name="plain")), env={})
    assert default.max_load_attempts == 3
    (shipped,) = load_pipelines(DEFAULT_PIPELINES_FILE, env={})
    assert shipped.max_load_attempts == 3
    (tight,) = load_pipelines(write(tmp_path, MINIMAL.format(name="tight") + "    max_load_attempts: 1\n"),
                              env={})
    assert tight.max_load_attempts == 1
    with pytest.raises(PipelineConfigError, match="max_load_attempts"):
        load_pipelines(write(tmp_path, MINIMAL.format(name="never") + "    max_load_attempts: 0\n"), env={})


def test_events_are_optional_and_name_a_queue_url(tmp_path: Path) -> None:
    (plain,) = load_pipelines(write(tmp_path, MINIMAL.format(name="plain")), env={})
    assert plain.events is None
    assert plain.events_conn_id is None
    queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/landing-events"
    text = MINIMAL.format(name="fast") + f"    aws_conn_id: aws_prod\n    events: {{queue_url: {queue}}}\n"
    (fast,) = load_pipelines(write(tmp_path, text), env={})
    assert fast.events is not None
    assert fast.events.queue_url == queue
    assert fast.events_conn_id == "aws_prod"  # the pipeline's connection unless events name another
    text = MINIMAL.format(name="own") + f"    events: {{queue_url: {queue}, aws_conn_id: aws_sqs}}\n"
    (own,) = load_pipelines(write(tmp_path, text), env={})
    assert own.events_conn_id == "aws_sqs"
    bad = MINIMAL.format(name="bad") + "    events: {queue_url: landing}\n"
    with pytest.raises(PipelineConfigError, match=r"events\.queue_url"):
        load_pipelines(write(tmp_path, bad), env={})
    local = "pipelines:\n  - name: l\n    landing: {path: /data}\n    aps: {bucket_key: my-aps-bucket}\n"
    with pytest.raises(PipelineConfigError, match="S3 landing"):
        load_pipelines(write(tmp_path, local + f"    events: {{queue_url: {queue}}}\n"), env={})


def test_an_event_only_pipeline_is_refused_with_the_reason(tmp_path: Path) -> None:
    """Issue 20, finding 8: with `schedule: none`, keys past the limit, failed HEADs, lost events and
    released files wait for an unrelated landing; nothing inside a run can remember an event it never got."""
    queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/landing-events"
    text = MINIMAL.format(name="only") + f"    schedule: none\n    events: {{queue_url: {queue}}}\n"
    with pytest.raises(PipelineConfigError, match=r"needs a schedule.*lost event"):
        load_pipelines(write(tmp_path, text), env={})
    # A schedule beside the events (the net), or no events at all, is fine.
    (netted,) = load_pipelines(write(tmp_path, MINIMAL.format(name="net") + "    schedule: '@daily'\n"
                                     f"    events: {{queue_url: {queue}}}\n"), env={})
    assert (netted.schedule, netted.events is not None) == ("@daily", True)
    manual_text = MINIMAL.format(name="manual") + "    schedule: none\n"
    (manual,) = load_pipelines(write(tmp_path, manual_text), env={})
    assert (manual.schedule, manual.events) == (None, None)
    # A test stack that starts runs by hand says so explicitly.
    allowed = text.replace("events: {", "events: {allow_without_schedule: true, ")
    (only,) = load_pipelines(write(tmp_path, allowed), env={})
    assert (only.schedule, only.events is not None) == (None, True)
