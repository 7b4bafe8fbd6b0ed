"""The web app's contract tests run on the help desk's real databases: SQLite and PostgreSQL.

The fixtures are the integration suite's (`tests/integration/tickets/conftest.py`): a schema
migrated once per backend and session, emptied before each test.
"""

from __future__ import annotations

from tests.integration.tickets.conftest import (  # noqa: F401 - fixtures, found by name
    db,
    db_url,
    postgresql_schema_url,
    sqlite_schema_url,
)
