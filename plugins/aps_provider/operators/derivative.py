"""Operators for APS Model Derivative."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aps_client.derivative import Submission, default_formats
from aps_client.urn import urn_in
from aps_provider.base import APSBaseOperator, aps_template_fields
from aps_provider.links import APSManifestLink, APSViewerLink

if TYPE_CHECKING:
    from airflow.sdk import Context

class APSStartTranslationOperator(APSBaseOperator):
    """POST a Model Derivative translation job for a design and return its URN.

    The job is submitted here, on the worker, exactly once per try; wait for it with
    `APSTranslationSensor` (whose trigger only reads the manifest). If the derivatives already exist APS
    answers 201 and no new work starts, unless `force` is set (`x-ads-force`: delete the old derivatives
    and translate again). With `reuse_existing_job` (the default) the manifest is read first: a translation
    already pending, in progress or successful is waited on as it is, so a re-run after a crash never
    submits the same job twice. Returns the URN; nothing else (and nothing secret) is stored.

    :param urn: Design URN (templated), or the dict returned by `APSUploadFromS3Operator` (pass
        `upload.output`; note that `upload.output["urn"]` would mean the XCom *key* "urn").
    :param region: APS region of the design (templated); default: the connection's.
    :param formats: Output formats (templated); default: svf2 with 2d and 3d views, plus a thumbnail.
    :param force: Re-translate even if derivatives exist (templated, e.g. "{{ params.force }}").
    :param workflow: Webhook workflow id (`misc.workflow`) to notify when the job finishes (templated).
    :param root_filename: For a zipped design: the root file inside the zip (templated).
    :param reuse_existing_job: Without `force`, do not POST when the manifest shows a job that is pending,
        in progress or successful.
    :param aps_conn_id: The `aps` connection.
    """

    template_fields: Sequence[str] = aps_template_fields("urn", "formats", "force", "workflow",
                                                         "root_filename")
    ui_color = "#f2d68a"
    operator_extra_links = (APSManifestLink(), APSViewerLink())

    def __init__(
        self,
        *,
        urn: str | dict[str, Any],
        formats: Sequence[dict[str, Any]] | None = None,
        force: bool = False,
        workflow: str | None = None,
        root_filename: str | None = None,
        reuse_existing_job: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.urn = urn
        self.formats = [dict(f) for f in formats] if formats else default_formats()
        self.force = force
        self.workflow = workflow
        self.root_filename = root_filename
        self.reuse_existing_job = reuse_existing_job

    def execute(self, context: Context) -> str:
        # `force` may arrive templated ("{{ params.force }}"), i.e. as text.
        self.force = str(self.force).strip().lower() in ("true", "1", "yes")
        urn = urn_in(self.urn)
        if not urn:
            raise ValueError(f"APSStartTranslationOperator needs a URN, got {self.urn!r}")
        ti = context.get("ti")
        with self.hook.get_client() as aps:
            outcome = aps.derivative.submit(
                urn, region=self.region, formats=self.formats, force=self.force,
                retried=ti is not None and ti.try_number > 1, reuse_existing_job=self.reuse_existing_job,
                workflow=self.workflow, root_filename=self.root_filename,
            )
        if outcome is Submission.REUSED:
            self.log.info("A translation of %s is already there: waiting on it, not submitting again", urn)
        elif outcome is Submission.ALREADY_TRANSLATED:
            self.log.info("Derivatives of %s already exist (HTTP 201): nothing to translate", urn)
        else:
            self.log.info("Translation job accepted for %s (formats: %s, force: %s)", urn,
                          ", ".join(f["type"] for f in self.formats), self.force)
        return urn
