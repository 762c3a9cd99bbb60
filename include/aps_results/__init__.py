"""The results database: schema (models), migrations, the per-model loader and registry helpers.

No Airflow import here: the DAGs, the API and the tests all use this package directly.
"""

from aps_results.models import READER_ROLE, SCHEMA

__all__ = ["READER_ROLE", "SCHEMA"]
