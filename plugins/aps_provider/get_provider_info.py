"""Provider metadata read by Airflow's ProvidersManager through the `apache_airflow_provider` entry point.

Airflow 3.2+ takes connection form fields declaratively from here ("conn-fields" and
"ui-field-behaviour"); the older `get_connection_form_widgets()` / `get_ui_field_behaviour()` hook methods
are deprecated and would be ignored once these keys exist. Keep this module import-light: Airflow calls it
in every process, often before anything else is configured.
"""

from __future__ import annotations

from typing import Any

from aps_client.regions import REGIONS

#: Regions APS accepts (aps-api.md §1). US is APS's own default.
APS_DEFAULT_BASE_URL = "https://developer.api.autodesk.com"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "aps-pipeline",
        "name": "Autodesk Platform Services (APS)",
        "description": "Hooks, operators, sensors and triggers for Autodesk Platform Services "
        "(OSS uploads and Model Derivative translations).",
        "versions": ["0.1.0"],
        "integrations": [
            {
                "integration-name": "Autodesk Platform Services",
                "external-doc-url": "https://aps.autodesk.com/",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {"integration-name": "Autodesk Platform Services", "python-modules": ["aps_provider.hooks.aps"]}
        ],
        "operators": [
            {
                "integration-name": "Autodesk Platform Services",
                "python-modules": ["aps_provider.operators.oss", "aps_provider.operators.derivative"],
            }
        ],
        "sensors": [
            {
                "integration-name": "Autodesk Platform Services",
                "python-modules": ["aps_provider.sensors.derivative"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Autodesk Platform Services",
                "python-modules": ["aps_provider.triggers.derivative"],
            }
        ],
        "connection-types": [
            {
                "connection-type": "aps",
                "hook-class-name": "aps_provider.hooks.aps.APSHook",
                "hook-name": "Autodesk Platform Services",
                "conn-fields": {
                    "region": {
                        "label": "Region",
                        "description": "Default APS data-centre region when a task gives none.",
                        "schema": {"type": ["string", "null"], "enum": [*REGIONS, None], "default": "US"},
                    },
                    "base_url": {
                        "label": "Base URL",
                        "description": "APS API root; point it at the local APS emulator for development.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "scopes": {
                        "label": "Default scopes",
                        "description": "Space-separated OAuth scopes of the 2-legged token.",
                        "schema": {
                            "type": ["string", "null"],
                            "default": "data:read data:write data:create bucket:create bucket:read",
                        },
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "schema", "port"],
                    "relabeling": {"login": "Client ID", "password": "Client Secret"},
                    "placeholders": {
                        "login": "APS application client id",
                        "password": "APS application client secret",
                        "base_url": APS_DEFAULT_BASE_URL,
                        "region": "US",
                        "scopes": "data:read data:write data:create bucket:create bucket:read",
                    },
                },
            }
        ],
        "extra-links": [
            "aps_provider.links.APSManifestLink",
            "aps_provider.links.APSViewerLink",
        ],
    }
