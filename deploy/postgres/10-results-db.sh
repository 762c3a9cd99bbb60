#!/usr/bin/env bash
# Runs once when the PostgreSQL container initialises its data directory: creates the results database
# beside Airflow's metadata database. The `aps` schema and the read-only role come from `aps-db upgrade`.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE DATABASE aps_results;
SQL
