"""Alembic revisions of the help desk schema, oldest first."""
