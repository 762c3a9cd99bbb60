"""Operator extra links and the addresses of the APS pages the plugin serves inside the Airflow UI.

The pages (served by the `aps_run_page` plugin at RUN_PAGES_PREFIX; the provider knows them by address only,
never imports them) sit behind Airflow's own login, so a link works on a click in a logged-in browser:

    run_page_url(dag_id, run_id)      every file of a run: state, reason, views, counts, thumbnail
    manifest_url(urn, dag_id)         the model's stored APS manifest
    viewer_url(urn, dag_id)           the model in the APS Viewer

Airflow 3 resolves links on the worker when the task finishes and stores the URL as an XCom, so the links
read the task's own return value (the URN, or a dict with a "urn" key) and need no API call. Addresses start
with `[api] base_url` when it is set (absolute links for e-mails), else they are relative to the UI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlencode

from airflow.sdk import BaseOperatorLink, conf

from aps_client.urn import urn_in

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

RUN_PAGES_PREFIX = "/aps"


def airflow_url(path: str) -> str:
    """`path` under the Airflow UI's address (`[api] base_url`), or as given when that is not set."""
    base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    return f"{base}{path}"


def run_page_path(dag_id: str, run_id: str) -> str:
    """The run page's path under RUN_PAGES_PREFIX (the pages link to each other with these paths)."""
    return f"/runs/{quote(dag_id, safe='')}/{quote(run_id, safe='')}"


def manifest_path(urn: str, dag_id: str) -> str:
    return f"/dags/{quote(dag_id, safe='')}/manifest?{urlencode({'urn': urn})}"


def viewer_path(urn: str, dag_id: str) -> str:
    return f"/dags/{quote(dag_id, safe='')}/viewer?{urlencode({'urn': urn})}"


def run_page_url(dag_id: str, run_id: str) -> str:
    return airflow_url(RUN_PAGES_PREFIX + run_page_path(dag_id, run_id))


def manifest_url(urn: str, dag_id: str) -> str:
    return airflow_url(RUN_PAGES_PREFIX + manifest_path(urn, dag_id))


def viewer_url(urn: str, dag_id: str) -> str:
    return airflow_url(RUN_PAGES_PREFIX + viewer_path(urn, dag_id))


class _URNLink(BaseOperatorLink):
    """A link built from the URN the task returned; empty while there is none."""

    url_for: ClassVar[Any]

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        try:
            value = XCom.get_value(ti_key=ti_key, key="return_value")
        except Exception:  # no XCom backend reachable (e.g. outside a task): no link rather than an error
            return ""
        urn = urn_in(value)
        return type(self).url_for(urn, ti_key.dag_id) if urn else ""


class APSManifestLink(_URNLink):
    """The model's APS manifest (as the results database stored it), on the plugin's page."""

    name = "APS Manifest"
    url_for = staticmethod(manifest_url)


class APSViewerLink(_URNLink):
    """The model in the APS Viewer, on the plugin's page (viewer token issued for the logged-in user)."""

    name = "APS Viewer"
    url_for = staticmethod(viewer_url)


class APSRunPageLink(BaseOperatorLink):
    """The run page: every file of the task's run, with each model's manifest and viewer links (the link a
    batch task shows, where one URN would not say which model)."""

    name = "APS files"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return run_page_url(ti_key.dag_id, ti_key.run_id)
