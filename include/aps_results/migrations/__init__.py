"""Alembic migrations of the results schema (run them with `aps-db upgrade`)."""
