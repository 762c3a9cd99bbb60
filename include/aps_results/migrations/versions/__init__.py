"""One Alembic revision per schema change, applied in order."""
