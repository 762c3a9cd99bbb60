"""The pipelines file: one YAML entry per ingest DAG, so a data engineer adds a pipeline by adding an entry.

    pipelines:                       # each entry becomes a DAG whose dag_id is `name`
      - name: aps_ingest
        landing: {bucket: "${APS_LANDING_BUCKET:-landing}", prefix: incoming/}   # or {path: /data/landing}
        aps: {bucket_key: "${APS_BUCKET_KEY:-aps-ingest}", region: US}
    defaults: {...}                  # optional: merged under every entry (entries win)

The file is `include/aps_pipeline/pipelines.yaml` (shipped in the package) unless `APS_PIPELINES_FILE` names
another one. String values may reference environment variables as `${NAME}` or `${NAME:-default}`, so the
same file serves a laptop and production. Errors name the file and the entry, e.g.

    pipelines.yaml: pipeline 'aps_ingest' (entry 1): aps.bucket_key: Field required
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ByteSize, ConfigDict, Field, ValidationError, field_validator, model_validator

from aps_client.derivative import default_formats
from aps_client.wait_policy import WaitPolicy

if TYPE_CHECKING:
    from aps_landing import Landing

PIPELINES_FILE_ENV = "APS_PIPELINES_FILE"
DEFAULT_PIPELINES_FILE = Path(__file__).with_name("pipelines.yaml")

_ENV_REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
_DAG_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")
_BUCKET_KEY = re.compile(r"^[-_.a-z0-9]{3,128}$")  # APS OSS bucket keys (aps-api.md §2.2)
MAX_LOAD_ATTEMPTS = 3  # the default of PipelineConfig.max_load_attempts
MAX_VALIDATION_ATTEMPTS = 3  # the default of PipelineConfig.max_validation_attempts
MAX_QUARANTINE_ATTEMPTS = 3  # the default of PipelineConfig.max_quarantine_attempts


class PipelineConfigError(ValueError):
    """The pipelines file is missing, unreadable or invalid; the message says where and why."""


class _Strict(BaseModel):
    # Unknown keys are typos in a hand-written file: refuse them rather than silently ignore them.
    model_config = ConfigDict(extra="forbid", frozen=True)


class LandingConfig(_Strict):
    """Where files land: an S3 bucket (`bucket`, through the pipeline's `aws_conn_id`) or a local folder."""

    bucket: str | None = Field(default=None, min_length=3, max_length=63, description="an S3 bucket")
    path: str | None = Field(default=None, min_length=1, description="a local folder (absolute path)")
    prefix: str = Field(default="", description="only keys under this prefix are ingested")
    quarantine_prefix: str = Field(default="quarantine/", min_length=1)

    @field_validator("prefix", "quarantine_prefix")
    @classmethod
    def _folder(cls, value: str) -> str:
        # Stored as "a/b/" (or "" for the whole bucket) so prefix tests are plain startswith().
        value = value.strip("/")
        return f"{value}/" if value else ""

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("must be an absolute folder path (workers do not share a working directory)")
        return value

    @model_validator(mode="after")
    def _one_place(self) -> LandingConfig:
        if (self.bucket is None) == (self.path is None):
            raise ValueError("name either `bucket` (an S3 bucket) or `path` (a local folder), not both")
        return self

    @property
    def kind(self) -> Literal["s3", "local"]:
        return "s3" if self.bucket is not None else "local"

    def open(self, s3_client: Callable[[], Any]) -> Landing:
        """The Landing this entry names; `s3_client()` (called only for a bucket) gives the boto3 client."""
        # Imported here: parsing a DAG file reads the config, and must not load boto3.
        if self.bucket is not None:
            from aps_landing.s3 import S3Landing

            return S3Landing(s3_client(), self.bucket)
        from aps_landing.local import LocalLanding

        return LocalLanding(str(self.path))

    @model_validator(mode="after")
    def _quarantine_apart(self) -> LandingConfig:
        if not self.quarantine_prefix:
            raise ValueError("quarantine_prefix must not be empty (it would be the whole bucket)")
        if self.prefix and self.prefix.startswith(self.quarantine_prefix):
            raise ValueError("prefix must not lie inside quarantine_prefix")
        return self


class APSTarget(_Strict):
    bucket_key: str
    policy: Literal["transient", "temporary", "persistent"] = "transient"
    region: str = "US"

    @field_validator("bucket_key")
    @classmethod
    def _bucket_key(cls, value: str) -> str:
        if not _BUCKET_KEY.match(value):
            raise ValueError(
                "APS bucket keys are 3-128 characters of lower-case letters, digits, '-', '_', '.'"
            )
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        return value.upper()


class OutputFormat(_Strict):
    type: str
    views: list[Literal["2d", "3d"]] | None = None
    # The format's `advanced` settings as APS takes them, e.g. {"conversionMethod": "v3"} for IFC inputs to
    # svf/svf2 (modelderivative.yaml, JobPayloadFormatSVF2AdvancedIFC). Part of the output profile: other
    # settings make another model.
    advanced: dict[str, Any] | None = None

    def as_aps(self) -> dict[str, Any]:
        """The entry of the Model Derivative job's `output.formats`."""
        return self.model_dump(exclude_none=True)


def _default_formats() -> list[OutputFormat]:
    return [OutputFormat.model_validate(fmt) for fmt in default_formats()]


class PoolConfig(_Strict):
    name: str = "aps_translation"
    slots: int = Field(default=8, ge=1)


NotifyEvent = Literal["run_failed", "files_failed", "files_rejected", "elements_changed"]


class NotifyConfig(_Strict):
    """Who hears about a run that needs a look: e-mail via an SMTP connection, a webhook via an HTTP one.

    Only connection ids live here: server addresses, passwords and webhook URLs (which are secrets for most
    chat tools) stay in Airflow connections.
    """

    email: list[str] = Field(default_factory=list, description="recipients")
    smtp_conn_id: str = "smtp_default"
    from_email: str | None = Field(default=None, description="default: the SMTP connection's from_email")
    webhook_conn_id: str | None = Field(default=None, description="HTTP connection with the webhook's URL")
    webhook_endpoint: str = Field(default="", description="path appended to the connection's URL")
    webhook_timeout_seconds: float = Field(
        default=10, gt=0, le=120, description="connect/read/write timeout of the webhook's POST"
    )
    on: list[NotifyEvent] = Field(
        default_factory=lambda: ["run_failed", "files_failed", "files_rejected"],
        description="run_failed: the DAG run failed; files_failed/files_rejected: it ended with such files; "
                    "elements_changed: it loaded a version whose elements differ from the version before",
    )

    @field_validator("email", mode="before")
    @classmethod
    def _addresses(cls, value: Any) -> Any:
        # From the environment a list arrives as text: "a@x.org, b@x.org" ("" or "[]" for nobody).
        if isinstance(value, str):
            return [part.strip() for part in value.strip("[]").split(",") if part.strip()]
        return value

    @field_validator("webhook_conn_id", "from_email", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return value or None

    @property
    def enabled(self) -> bool:
        return bool(self.email or self.webhook_conn_id)


class EventsConfig(_Strict):
    """Event-driven runs: the SQS queue that receives the landing bucket's S3 `ObjectCreated` notifications.

    A run starts as soon as the queue has a message; the schedule keeps running as the net for lost events.
    """

    queue_url: str = Field(min_length=1, description="https://sqs.<region>.amazonaws.com/<account>/<name>")
    aws_conn_id: str | None = Field(default=None, description="default: the pipeline's aws_conn_id")
    allow_without_schedule: bool = Field(
        default=False,
        description="accept `schedule: none` (test stacks that start runs by hand): a lost event's file, "
        "keys past max_files_per_run and unreadable HEADs then wait for the next landing or a manual run",
    )

    @field_validator("queue_url")
    @classmethod
    def _queue_url(cls, value: str) -> str:
        # A URL (AWS, or a local SQS server's http one), not a queue name: the trigger needs the URL.
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be the queue's URL, e.g. https://sqs.eu-west-1.amazonaws.com/123/landing")
        return value

    @field_validator("aws_conn_id", mode="before")
    @classmethod
    def _empty_conn_is_default(cls, value: Any) -> Any:
        return value or None


class WebhooksConfig(_Strict):
    """APS's extraction.finished callbacks end translation waits early (polling stays the net).

    Each batch's submission makes sure one hook per APS application and region sends the jobs of `workflow`
    (their `misc.workflow`) to the callback URL, signed with the hook secret; the results API's receiver
    records each delivery once and NOTIFYs its URN on `listen_conn_id`'s database, where the waiting
    triggers listen. The URL and secret live in the connection: `extra.callback_url`, `password`.
    """

    conn_id: str = Field(min_length=1, description="connection: extra.callback_url and the hook secret")
    workflow: str = Field(default="", description="misc.workflow of the jobs; default: from the DAG id")
    listen_conn_id: str | None = Field(default=None, description="default: the pipeline's results_conn_id")
    poll_interval: float = Field(
        default=WaitPolicy.webhook_poll_interval, gt=0,
        description="first poll delay while callbacks are heard (the net for a lost one), seconds",
    )

    @field_validator("workflow")
    @classmethod
    def _workflow(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z0-9-]{1,36}", value):
            raise ValueError("must be 1-36 letters, digits or hyphens (APS's misc.workflow)")
        return value

    @field_validator("listen_conn_id", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return value or None


class RetentionConfig(_Strict):
    """What the daily `aps_maintenance` DAG removes for this pipeline (None: keep for ever)."""

    quarantine_days: int | None = Field(
        default=None, ge=1, description="remove quarantine copies and reason files older than this"
    )
    history_days: int | None = Field(
        default=None, ge=1, description="remove run summaries and validation rows older than this"
    )
    keep_versions: int | None = Field(
        default=None, ge=1,
        description="keep the results of each document's newest N versions; older ones are purged "
                    "(the version rows and their diffs stay)",
    )
    delete_derivatives: bool = Field(
        default=False,
        description="delete the APS manifest and OSS object of each model no live document version needs "
                    "(all its versions deleted or purged); the same content landing again is uploaded and "
                    "translated again",
    )

    @field_validator("quarantine_days", "history_days", "keep_versions", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


class ExportConfig(_Strict):
    """Analytics export on load: each loaded document version's objects and properties as Parquet
    (aps_results.export), under a folder every worker mounts or `s3://bucket/prefix`. Empty: no export
    on load (`aps-db export DEST` exports later, or again)."""

    to: str | None = Field(default=None, description="a folder, or s3://bucket/prefix")
    aws_conn_id: str | None = Field(default=None, description="for s3://; default: the pipeline's")

    @field_validator("to", "aws_conn_id", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


class BudgetConfig(_Strict):
    """`budget:` (per pipeline, and the file's top-level one for all pipelines together): translation jobs
    a UTC day and a UTC month may start (None: no limit), each weighted by its input format
    (aps_pipeline.budget).

    Every format weighs `default_weight` (1) unless `weights` says otherwise, e.g. `{rvt: 2, nwd: 2}`. APS
    publishes no per-format rate to derive other defaults from: its 2025 business model meters Model
    Derivative jobs against a monthly cap for paid APIs (README, "Operating it"), so a job is the unit.
    """

    jobs_per_day: float | None = Field(default=None, ge=0, description="weighted jobs a UTC day may start")
    jobs_per_month: float | None = Field(default=None, ge=0,
                                        description="weighted jobs a UTC month may start")
    default_weight: float = Field(default=1.0, ge=0, description="a job's weight for an unlisted format")
    weights: dict[str, float] = Field(default_factory=dict, description="weight per input extension")

    @field_validator("jobs_per_day", "jobs_per_month", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value in ("", "none", "None") else value

    @field_validator("weights")
    @classmethod
    def _extensions(cls, value: dict[str, float]) -> dict[str, float]:
        if any(weight < 0 for weight in value.values()):
            raise ValueError("weights must not be negative")
        return {ext.lower().lstrip("."): weight for ext, weight in value.items()}

    @property
    def limited(self) -> bool:
        return self.jobs_per_day is not None or self.jobs_per_month is not None

    def weight(self, extension: str) -> float:
        """What one translation of a file with this extension costs against the budget."""
        return self.weights.get(extension.lower().lstrip("."), self.default_weight)


class PipelineConfig(_Strict):
    """One ingest pipeline (one DAG)."""

    name: str = Field(description="the DAG id")
    description: str = ""
    schedule: str | None = "@hourly"
    start_date: date = date(2025, 1, 1)
    owner: str = "data-engineering"
    tags: list[str] = Field(default_factory=lambda: ["aps"])

    landing: LandingConfig
    aps: APSTarget

    aws_conn_id: str = "aws_default"
    events: EventsConfig | None = Field(default=None, description="start runs from S3 events (optional)")
    webhooks: WebhooksConfig | None = Field(default=None, description="APS callbacks end waits (optional)")
    aps_conn_id: str = "aps_default"
    results_conn_id: str = "aps_results"
    reader_conn_id: str = Field(
        default="aps_results_reader", description="read-only login (aps_reader) the run page reads with"
    )
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    # The file's top-level `budget:`, shared by every pipeline: set by parse_pipelines, never by an entry.
    global_budget: BudgetConfig = Field(default_factory=BudgetConfig, exclude=True)
    export: ExportConfig = Field(default_factory=ExportConfig)

    output_formats: list[OutputFormat] = Field(default_factory=_default_formats, min_length=1)
    translation_timeout: float = Field(
        default=2 * 3600, gt=0, description="wall-clock seconds per translation"
    )
    poll_interval: float = Field(
        default=WaitPolicy.poll_interval, gt=0, description="first manifest poll delay, seconds"
    )
    poll_max_interval: float = Field(
        default=WaitPolicy.max_poll_interval, gt=0, description="backoff ceiling between polls, seconds"
    )
    max_file_size: ByteSize = Field(
        default=ByteSize(2 * 1024**3), gt=0, description="bytes, or '500MB', '2GiB'"
    )
    allowed_extensions: list[str] | None = Field(
        default=None, description="narrow APS's supported inputs to these extensions (None: all APS supports)"
    )
    max_files_per_run: int = Field(default=2000, ge=1, description="new files one run claims at most")
    full_listing_every_hours: float = Field(
        default=24, gt=0,
        description="a scheduled run lists only what is new since the last listing (the watermark); this "
        "often it considers every object under the prefix instead (aps_pipeline.watermark)",
    )
    listing_watermark_lag_seconds: float = Field(
        default=3600, ge=0,
        description="the watermark trails each listing by this much: objects listable later than their "
        "LastModified (slow multipart uploads) within it are still found by the next run",
    )
    sidecar_grace_seconds: float = Field(
        default=600, ge=0,
        description="a sidecar landing up to this long after its file re-opens the file's rejection for "
        "missing or bad metadata (aps_pipeline.late_sidecars); producers should put the sidecar first",
    )
    # Runs overlap so that a file landing during a run starts its own within seconds (events); the files
    # registry keeps them apart: a run never claims a file another active run holds.
    max_active_runs: int = Field(default=6, ge=1, description="runs of the pipeline at the same time")
    models_per_task: int = Field(
        default=50, ge=1, description="models per mapped batch task instance (1: one model per group)"
    )
    upload_concurrency: int = Field(
        default=8, ge=1, le=64, description="models a batch task uploads (and submits) at the same time"
    )
    read_concurrency: int = Field(
        default=8, ge=1, description="landing reads in flight: discovery's HEADs, validation's GETs"
    )
    # Loads in parallel do not wait on each other: each writes only its own model's rows of aps.properties.
    load_concurrency: int = Field(
        default=4, ge=1, le=64,
        description="models a batch task loads at the same time; each load holds a results connection (the "
        "task's pool is sized from it: aps_results.db.pool_options)",
    )
    pool: PoolConfig = Field(default_factory=PoolConfig)
    retries: int = Field(default=2, ge=0)
    retry_delay_seconds: float = Field(default=60, ge=0)
    max_load_attempts: int = Field(
        default=MAX_LOAD_ATTEMPTS,
        ge=1,
        description="loads of a model killed mid-way (out of memory?) before its files fail instead",
    )
    max_validation_attempts: int = Field(
        default=MAX_VALIDATION_ATTEMPTS,
        ge=1,
        description="runs that try to validate a file (read errors, runs ended mid-way) before it fails",
    )
    # IDS content checks of IFC files (aps_pipeline.ids): after the other checks pass, in worker processes.
    ids: list[str] = Field(
        default_factory=list,
        description="IDS documents IFC files must meet: paths (relative ones from the pipelines file's "
        "folder) or s3://<landing bucket>/<key> URIs",
    )
    ids_per_project: dict[str, list[str]] = Field(
        default_factory=dict,
        description="more IDS documents for the files of a project (their metadata's `project`)",
    )
    on_ids_failure: Literal["reject", "warn"] = Field(
        default="reject",
        description="reject: a failing (or unfinished) check rejects the file; warn: it is recorded only",
    )
    ids_timeout: float = Field(default=600, gt=0, description="wall-clock seconds per file's IDS check")
    ids_memory_limit: ByteSize = Field(
        default=ByteSize(4 * 1024**3), gt=0, description="address space of an IDS check's worker process"
    )
    max_quarantine_attempts: int = Field(
        default=MAX_QUARANTINE_ATTEMPTS,
        ge=1,
        description="runs that try to copy a rejected file to the quarantine before it stays rejected and "
        "not quarantined (the reason says why)",
    )

    @field_validator("name")
    @classmethod
    def _dag_id(cls, value: str) -> str:
        if not _DAG_ID.match(value):
            raise ValueError("must be a valid DAG id: letters, digits, '_', '-', '.' (at most 200)")
        return value

    @field_validator("ids", mode="before")
    @classmethod
    def _ids_list(cls, value: Any) -> Any:
        # From the environment a list arrives as text: "a.ids, s3://bucket/b.ids" ("" for none).
        if isinstance(value, str):
            return [part.strip() for part in value.strip("[]").split(",") if part.strip()]
        return value

    @field_validator("events", mode="before")
    @classmethod
    def _no_queue_no_events(cls, value: Any) -> Any:
        # `queue_url: ${APS_EVENTS_QUEUE_URL:-}` with the variable unset: the pipeline runs on its schedule.
        if isinstance(value, Mapping) and not value.get("queue_url"):
            return None
        return value

    @field_validator("webhooks", mode="before")
    @classmethod
    def _no_connection_no_webhooks(cls, value: Any) -> Any:
        # `conn_id: ${APS_WEBHOOK_CONN_ID:-}` with the variable unset: waits poll only.
        if isinstance(value, Mapping) and not value.get("conn_id"):
            return None
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        # "none" (e.g. APS_INGEST_SCHEDULE=none) means manual runs only.
        return None if value is None or value.strip().lower() in ("", "none", "null") else value

    @field_validator("allowed_extensions")
    @classmethod
    def _extensions(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        cleaned = [ext.lower().lstrip(".") for ext in value]
        if not cleaned or not all(cleaned):
            raise ValueError(
                "list at least one non-empty extension, or leave it out to accept all APS inputs"
            )
        return cleaned

    @model_validator(mode="after")
    def _poll_bounds(self) -> PipelineConfig:
        if self.poll_max_interval < self.poll_interval:
            raise ValueError("poll_max_interval must be at least poll_interval")
        return self

    @model_validator(mode="after")
    def _events_need_a_bucket(self) -> PipelineConfig:
        if self.events is not None and self.landing.kind != "s3":
            raise ValueError("events: S3 event notifications need an S3 landing (`landing.bucket`)")
        return self

    @model_validator(mode="after")
    def _events_need_a_schedule(self) -> PipelineConfig:
        # Refused rather than half-served: no run can remember an event it never got (the queue's trigger
        # deletes each message before a run exists), so only a listing on a schedule finds what events miss.
        if self.events is not None and self.schedule is None and not self.events.allow_without_schedule:
            raise ValueError(
                "events: an event-driven pipeline needs a schedule too (e.g. '@hourly'): it is the net that "
                "lists the prefix for what events cannot bring. Without it a lost event's file, keys past "
                "max_files_per_run, objects a HEAD could not read and files an ended run released wait for "
                "an unrelated landing. A scheduled listing costs what landed since the last one (the listing "
                "watermark), not the whole prefix. (A test stack that starts runs by hand may set "
                "events.allow_without_schedule: true)"
            )
        return self

    @property
    def wait_policy(self) -> WaitPolicy:
        """The translation wait's policy: this pipeline's delays and deadline, WaitPolicy's for the rest;
        with webhooks, the database the trigger hears callbacks on and the longer poll interval then."""
        policy = WaitPolicy(poll_interval=self.poll_interval, max_poll_interval=self.poll_max_interval,
                            timeout=self.translation_timeout)
        if self.webhooks is None:
            return policy
        return policy.with_overrides(listen_conn_id=self.webhooks.listen_conn_id or self.results_conn_id,
                                     webhook_poll_interval=self.webhooks.poll_interval)

    @property
    def webhook_workflow(self) -> str | None:
        """The `misc.workflow` the jobs are submitted with (their hook's scope); None without webhooks."""
        if self.webhooks is None:
            return None
        return self.webhooks.workflow or re.sub(r"[^A-Za-z0-9-]", "-", self.name)[:36]

    @property
    def events_conn_id(self) -> str | None:
        """The connection the SQS queue is read through (None when the pipeline has no events)."""
        if self.events is None:
            return None
        return self.events.aws_conn_id or self.aws_conn_id

    def job_formats(self) -> list[dict[str, Any]]:
        return [fmt.as_aps() for fmt in self.output_formats]


class BackupConfig(_Strict):
    folder: str = Field(min_length=1, description="absolute folder receiving one sub-folder per backup")
    keep: int = Field(default=7, ge=1, description="backups kept in the folder (older ones are removed)")

    @field_validator("folder")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute folder path")
        return value


class MaintenanceConfig(_Strict):
    """The `maintenance:` section: the daily maintenance DAG (retention per pipeline is `retention:`)."""

    dag_id: str = "aps_maintenance"
    schedule: str | None = "@daily"
    results_conn_id: str = "aps_results"
    airflow_db_days: int | None = Field(
        default=90, ge=1, description="`airflow db clean` removes Airflow's records older than this"
    )
    # Task processes of Airflow 3 have no metadata database of their own (the Task SDK talks to the API), so
    # `airflow db clean` reaches it through this connection: a postgres connection to Airflow's database.
    airflow_db_conn_id: str = "airflow_metadata"
    backup: BackupConfig | None = Field(default=None, description="a backup of the results database")

    @field_validator("backup", "airflow_db_days", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        # `backup: {folder: ""}` (an unset environment variable) means no backup.
        if value == "" or (isinstance(value, dict) and not value.get("folder")):
            return None
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        return None if value in (None, "", "none", "None") else value


class PipelinesFile(_Strict):
    pipelines: list[PipelineConfig]
    maintenance: MaintenanceConfig = Field(default_factory=MaintenanceConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)


# --- loading ------------------------------------------------------------------------------------------


def pipelines_file(env: Mapping[str, str] | None = None) -> Path:
    """The pipelines file in use: $APS_PIPELINES_FILE, else the one shipped in this package."""
    env = os.environ if env is None else env
    override = env.get(PIPELINES_FILE_ENV)
    return Path(override) if override else DEFAULT_PIPELINES_FILE


def expand_env(value: Any, env: Mapping[str, str], where: str = "") -> Any:
    """Replace `${NAME}` / `${NAME:-default}` in every string of a parsed YAML tree."""
    if isinstance(value, dict):
        return {k: expand_env(v, env, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match["name"], match["default"]
        if name in env and (env[name] != "" or default is None):
            return env[name]
        if default is not None:
            return default
        raise PipelineConfigError(f"{where}: environment variable {name} is not set and has no default")

    return _ENV_REFERENCE.sub(substitute, value)


def _merge(defaults: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    merged = dict(defaults)
    for key, value in entry.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        location = ".".join(str(p) for p in item["loc"]) or "(entry)"
        parts.append(f"{location}: {item['msg']}")
    return "; ".join(parts)


def parse_pipelines(
    document: Any, *, source: str, env: Mapping[str, str] | None = None
) -> list[PipelineConfig]:
    """Validate an already-parsed pipelines document; `source` names it in error messages."""
    env = os.environ if env is None else env
    if not isinstance(document, dict) or not isinstance(document.get("pipelines"), list):
        raise PipelineConfigError(f"{source}: expected a mapping with a `pipelines:` list")
    unknown = set(document) - {"pipelines", "defaults", "maintenance", "budget"}
    if unknown:
        raise PipelineConfigError(f"{source}: unknown top-level keys {sorted(unknown)}")
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise PipelineConfigError(f"{source}: `defaults:` must be a mapping")

    shared_budget = _global_budget(document, source, env)
    pipelines: list[PipelineConfig] = []
    for index, raw in enumerate(document["pipelines"], start=1):
        label = f"entry {index}"
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            label = f"pipeline {raw['name']!r} ({label})"
        if not isinstance(raw, dict):
            raise PipelineConfigError(f"{source}: {label}: expected a mapping, got {type(raw).__name__}")
        if "global_budget" in raw:
            raise PipelineConfigError(
                f"{source}: {label}: the global budget is the file's top-level `budget:`")
        try:
            expanded = expand_env(_merge(defaults, raw), env)
            pipelines.append(PipelineConfig.model_validate({**expanded, "global_budget": shared_budget}))
        except PipelineConfigError as exc:
            raise PipelineConfigError(f"{source}: {label}: {exc}") from None
        except ValidationError as exc:
            raise PipelineConfigError(f"{source}: {label}: {_describe(exc)}") from None

    names = [p.name for p in pipelines]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PipelineConfigError(f"{source}: pipeline names must be unique (they are DAG ids): {duplicates}")
    return pipelines


def _global_budget(document: dict[str, Any], source: str, env: Mapping[str, str]) -> BudgetConfig:
    """The file's top-level `budget:` (no limit when absent)."""
    try:
        return BudgetConfig.model_validate(expand_env(document.get("budget") or {}, env, "budget"))
    except ValidationError as exc:
        raise PipelineConfigError(f"{source}: budget: {_describe(exc)}") from None


# The last pipelines file parsed, by its exact bytes: a task reads the file several times (its pipeline, its
# engines), and PyYAML's pure-Python parser costs ~10 ms a time; a worker that parsed it before forking
# (aps_ingest_tasks.preload) spares its task processes the parse. Keyed by content, never by mtime, so an
# edit is seen at the next read.
_PARSED: dict[bytes, Any] = {}


def _parse_yaml(raw: bytes) -> Any:
    if raw not in _PARSED:
        _PARSED.clear()
        _PARSED[raw] = yaml.safe_load(raw.decode("utf-8"))
    return copy.deepcopy(_PARSED[raw])  # callers get their own document, as from a fresh parse


def _read(path: str | Path | None, env: Mapping[str, str] | None) -> tuple[Path, Any]:
    file = Path(path) if path is not None else pipelines_file(env)
    try:
        return file, _parse_yaml(file.read_bytes())
    except OSError as exc:
        raise PipelineConfigError(f"{file}: cannot read the pipelines file: {exc.strerror or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PipelineConfigError(f"{file}: not valid YAML: {exc}") from None


def load_pipelines(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> list[PipelineConfig]:
    """Read and validate the pipelines file (default: `pipelines_file()`)."""
    file, document = _read(path, env)
    return parse_pipelines(document, source=str(file), env=env)


def load_maintenance(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> MaintenanceConfig:
    """The file's `maintenance:` section (defaults when it has none)."""
    file, document = _read(path, env)
    section = document.get("maintenance") if isinstance(document, dict) else None
    try:
        return MaintenanceConfig.model_validate(expand_env(section or {}, os.environ if env is None else env))
    except ValidationError as exc:
        raise PipelineConfigError(f"{file}: maintenance: {_describe(exc)}") from None


def get_pipeline(
    name: str, path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> PipelineConfig:
    """The entry called `name`, or a PipelineConfigError listing the names there are."""
    pipelines = load_pipelines(path, env)
    for pipeline in pipelines:
        if pipeline.name == name:
            return pipeline
    source = path if path is not None else pipelines_file(env)
    raise PipelineConfigError(f"{source}: no pipeline named {name!r} (have {[p.name for p in pipelines]})")
