"""The ingest DAGs' Airflow tasks: thin wrappers that hand Airflow's hooks to the steps in `aps_pipeline`.

The flow itself is in `dags/aps_ingest.py`; the work is in `aps_pipeline` (Airflow-free). This package only
turns connections into clients and engines and the run's context into arguments.
"""
