"""APSPlugin: what the APS toolkit adds to Airflow besides the provider (registered via entry point).

- the APS pages inside the UI (`aps_provider.web`, a FastAPI app at /aps behind Airflow's login): the run
  page, reached from a DAG run and from a task instance ("APS files" tab), the manifest and viewer pages;
- operator extra links (so Airflow knows them by name);
- template macros, used as `{{ macros.aps.urn_for(bucket, key) }}`,
  `{{ macros.aps.run_page_url(dag.dag_id, run_id) }}`, `{{ macros.aps.viewer_url(urn, dag.dag_id) }}` and
  `{{ macros.aps.manifest_url(urn, dag.dag_id) }}`.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from airflow.sdk.plugins_manager import AirflowPlugin

from aps_client.urn import object_id, to_urn
from aps_provider.links import (
    RUN_PAGES_PREFIX,
    APSManifestLink,
    APSViewerLink,
    manifest_url,
    run_page_url,
    viewer_url,
)


def urn_for(bucket_key: str, object_key: str) -> str:
    """The Model Derivative URN of an OSS object, without asking APS."""
    return to_urn(object_id(bucket_key, object_key))


# Tabs the UI shows on a DAG run and on a task instance; it fills in the {placeholders}.
RUN_PAGE_VIEWS = [
    {"name": "APS files", "href": f"{RUN_PAGES_PREFIX}/runs/{{DAG_ID}}/{{RUN_ID}}", "destination": "dag_run",
     "url_route": "aps-run-files"},
    {"name": "APS files", "href": f"{RUN_PAGES_PREFIX}/runs/{{DAG_ID}}/{{RUN_ID}}",
     "destination": "task_instance", "url_route": "aps-task-files"},
]


class APSPlugin(AirflowPlugin):
    name = "aps"
    operator_extra_links = [APSManifestLink(), APSViewerLink()]
    # Plugin macros become `macros.<plugin name>.<function name>` in templates.
    macros = [urn_for, run_page_url, viewer_url, manifest_url]
    external_views = RUN_PAGE_VIEWS

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        # Built on first use: only the api-server asks, and workers loading the plugin skip FastAPI.
        from aps_provider.web import app

        return [{"app": app, "url_prefix": RUN_PAGES_PREFIX, "name": "APS run pages"}]


# A namespace for code that wants the same helpers without templates.
aps_macros = SimpleNamespace(urn_for=urn_for, run_page_url=run_page_url, viewer_url=viewer_url,
                             manifest_url=manifest_url)
