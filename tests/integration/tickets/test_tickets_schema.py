"""The schema comes from the Alembic revisions; the ORM models agree with it on both backends."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from tickets.db import Database
from tickets.migrate import current_revision, head_revision, upgrade
from tickets.schema import include_object, metadata


def _diff(connection: Connection) -> list[Any]:
    opts = {"compare_type": True, "include_object": include_object}
    context = MigrationContext.configure(connection, opts=opts)
    return list(compare_metadata(context, metadata))


async def test_given_migrated_database_when_compared_to_models_then_no_difference(
    db: Database,
) -> None:
    async with db.engine.connect() as connection:
        assert await connection.run_sync(_diff) == []


async def test_given_migrated_database_when_upgraded_again_then_stays_at_head(
    db: Database, db_url: str
) -> None:
    assert await current_revision(db_url) == head_revision()
    await upgrade(db_url)
    assert await current_revision(db_url) == head_revision()
