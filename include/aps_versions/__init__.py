"""aps_versions: documents and their versions; what changed between two versions (`diff`), Airflow-free."""
