"""aps_pipeline: the ingest DAG's steps as plain functions, without Airflow.

Each step takes its dependencies explicitly (an aps_landing.Landing, from `pipeline.landing.open(...)`; a
SQLAlchemy Engine on the results database; an aps_client.APSClient; the PipelineConfig) and returns a small
JSON-able dict the DAG can pass through XCom. In DAG order:

    config.load_pipelines() / get_pipeline(name)          the pipelines file: one DAG per entry
    discovery.discover_files(landing, engine, pipeline, run_id, limit=None, prefix=None)
    validation.validate_files(landing, engine, pipeline, run_id, supported=None, aps=None)
    quarantine.quarantine_rejected(landing, engine, pipeline, run_id)
    batch.plan_batches(engine, pipeline, run_id, max_map_length=...)  -> batches of ModelPlans (dedupe)
    per batch:
    upload.upload_models(aps, landing, engine, models, pipeline=..., run_id=..., concurrency=...)
    submission.submit_models(aps, engine, uploaded, pipeline=..., run_id=..., formats=...)
    (the wait: the provider's APSTranslationsSensor)
    settle.settle_models(aps, engine, model_ids, run_id, pipeline=..., verdicts=...)  load, or say why not
    summary.summarize_run(engine, pipeline.name, run_id, started_at=None)

Import the modules themselves (`from aps_pipeline.discovery import discover_files`): this package imports
nothing, so a DAG file that only needs `aps_pipeline.config` parses quickly.
"""
