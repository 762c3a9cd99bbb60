"""APSPlugin: what the APS provider adds to Airflow besides the provider info (registered via entry point).

- operator extra links (so Airflow knows them by name);
- template macros, used as `{{ macros.aps.urn_for(bucket, key) }}`,
  `{{ macros.aps.run_page_url(dag.dag_id, run_id) }}`, `{{ macros.aps.viewer_url(urn, dag.dag_id) }}` and
  `{{ macros.aps.manifest_url(urn, dag.dag_id) }}`.

The pages those links and macros open are served by another plugin, `aps_run_page` (it reads the ingest's
results, which the provider knows nothing of); here they are addresses only.
"""

from __future__ import annotations

from types import SimpleNamespace

from airflow.sdk.plugins_manager import AirflowPlugin

from aps_client.urn import object_id, to_urn
from aps_provider.links import (
    APSManifestLink,
    APSViewerLink,
    manifest_url,
    run_page_url,
    viewer_url,
)


def urn_for(bucket_key: str, object_key: str) -> str:
    """The Model Derivative URN of an OSS object, without asking APS."""
    return to_urn(object_id(bucket_key, object_key))


class APSPlugin(AirflowPlugin):
    name = "aps"
    operator_extra_links = [APSManifestLink(), APSViewerLink()]
    # Plugin macros become `macros.<plugin name>.<function name>` in templates.
    macros = [urn_for, run_page_url, viewer_url, manifest_url]


# A namespace for code that wants the same helpers without templates.
aps_macros = SimpleNamespace(urn_for=urn_for, run_page_url=run_page_url, viewer_url=viewer_url,
                             manifest_url=manifest_url)
