"""aps_pipeline: the ingest DAG's steps as plain functions, without Airflow.

Each step takes its dependencies explicitly (an aps_landing.Landing, from `pipeline.landing.open(...)`; a
SQLAlchemy Engine on the results database; an aps_client.APSClient; the PipelineConfig) and returns a small
JSON-able dict the DAG can pass through XCom. In DAG order:

    config.load_pipelines() / get_pipeline(name)          the pipelines file: one DAG per entry
    discovery.discover_files(landing, engine, pipeline, run_id, limit=None, prefix=None)
    validation.validate_files(landing, engine, pipeline, run_id, supported=None, aps=None)
    quarantine.quarantine_rejected(landing, engine, pipeline, run_id)
    dedupe.assign_models(engine, pipeline, run_id, force=False)       -> the ModelPlan of each model to do
    (upload + translate + wait: the provider's operators and sensor)
    settle.settle_model(aps, engine, model_id, run_id, last_attempt=...)  load it, or record why not
    summary.summarize_run(engine, pipeline.name, run_id, started_at=None)

Import the modules themselves (`from aps_pipeline.discovery import discover_files`): this package imports
nothing, so a DAG file that only needs `aps_pipeline.config` parses quickly.
"""
