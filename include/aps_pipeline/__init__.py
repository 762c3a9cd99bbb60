"""aps_pipeline: the ingest DAG's steps as plain functions, without Airflow.

Each step takes its dependencies explicitly (a boto3 S3 client, a SQLAlchemy Engine for the results
database, an aps_client.APSClient, the PipelineConfig) and returns small JSON-able results, so the DAG can
pass them through XCom and the tests can call them directly against real services.
"""
