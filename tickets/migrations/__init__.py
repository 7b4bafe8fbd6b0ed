"""Alembic environment and revisions for the help desk schema (run through `tickets.migrate`)."""
