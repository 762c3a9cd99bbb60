"""APSRunPagePlugin: the run page inside the Airflow UI (registered by the `airflow.plugins` entry point).

- the pages (`aps_run_page.web`, a FastAPI app at `RUN_PAGES_PREFIX` behind Airflow's login): the run page,
  the manifest and viewer pages;
- the "APS files" tab of a DAG run and of a task instance, which opens the run page.

The addresses are `aps_provider.links`'s, so the provider's extra links and macros point here without
importing this package.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.plugins_manager import AirflowPlugin

from aps_provider.links import RUN_PAGES_PREFIX

# Tabs the UI shows on a DAG run and on a task instance; it fills in the {placeholders}.
RUN_PAGE_VIEWS = [
    {"name": "APS files", "href": f"{RUN_PAGES_PREFIX}/runs/{{DAG_ID}}/{{RUN_ID}}", "destination": "dag_run",
     "url_route": "aps-run-files"},
    {"name": "APS files", "href": f"{RUN_PAGES_PREFIX}/runs/{{DAG_ID}}/{{RUN_ID}}",
     "destination": "task_instance", "url_route": "aps-task-files"},
]


class APSRunPagePlugin(AirflowPlugin):
    name = "aps_run_page"
    external_views = RUN_PAGE_VIEWS

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        # Built on first use: only the api-server asks, and workers loading the plugin skip FastAPI.
        from aps_run_page.web import app

        return [{"app": app, "url_prefix": RUN_PAGES_PREFIX, "name": "APS run pages"}]
