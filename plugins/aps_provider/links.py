"""Operator extra links: the translated model in the results API and in the APS viewer page.

Airflow 3 resolves links on the worker when the task finishes and stores the URL as an XCom, so the
links read the task's own return value (the URN, or a dict with a "urn" key) and need no API call.
The results API's root comes from the environment variable APS_RESULTS_API_URL.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

DEFAULT_RESULTS_API_URL = "http://localhost:8000"


def results_api_url() -> str:
    return (os.environ.get("APS_RESULTS_API_URL") or DEFAULT_RESULTS_API_URL).rstrip("/")


def urn_from_value(value: Any) -> str | None:
    """The URN in a task's return value: the value itself, or its "urn" entry."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and isinstance(value.get("urn"), str):
        return value["urn"]
    return None


def manifest_url(urn: str) -> str:
    return f"{results_api_url()}/v1/models?urn={quote(urn, safe='')}"


def viewer_url(urn: str) -> str:
    return f"{results_api_url()}/viewer?urn={quote(urn, safe='')}"


class _URNLink(BaseOperatorLink):
    """A link built from the URN the task returned; empty while there is none."""

    url_for: ClassVar[Any]

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        try:
            value = XCom.get_value(ti_key=ti_key, key="return_value")
        except Exception:  # no XCom backend reachable (e.g. outside a task): no link rather than an error
            return ""
        urn = urn_from_value(value)
        return type(self).url_for(urn) if urn else ""


class APSManifestLink(_URNLink):
    """The model's record (manifest and results) in the read-only results API."""

    name = "APS Manifest"
    url_for = staticmethod(manifest_url)


class APSViewerLink(_URNLink):
    """The model in the APS viewer page served by the results API."""

    name = "APS Viewer"
    url_for = staticmethod(viewer_url)
