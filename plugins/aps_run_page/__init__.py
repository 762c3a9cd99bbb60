"""aps_run_page: the run page inside the Airflow UI (every file of an ingest run, its model's manifest and
viewer), an Airflow plugin of its own. It reads the ingest's results; the provider (aps_provider) only
links to it by address (`aps_provider.links`)."""
