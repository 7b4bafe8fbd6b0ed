"""Brings a records database to the newest schema revision (what `callcenter db upgrade` runs).

The Alembic environment lives in the `tickets.migrations` package, so no alembic.ini is needed:
`alembic_config()` builds the configuration in code. Upgrades run on one connection inside one
transaction; PostgreSQL and SQLite both have transactional DDL, so a failed upgrade leaves the
schema as it was.
"""

from __future__ import annotations

import asyncio
import logging

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from tickets.db import create_engine
from tickets.errors import MigrationFailed

log = logging.getLogger(__name__)

SCRIPT_LOCATION = "tickets:migrations"


def alembic_config(url: str = "") -> Config:
    """The Alembic configuration of the help desk schema (URL only needed by the alembic CLI)."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if url:
        config.set_main_option("sqlalchemy.url", url)
    return config


def head_revision() -> str:
    """The newest revision shipped with this code."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise MigrationFailed("no schema revisions found")
    return head


async def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the database at `url` to `revision` (default: the newest)."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade_on, revision)
    except SQLAlchemyError as err:
        raise MigrationFailed(f"schema upgrade to {revision} failed: {err}") from err
    finally:
        await engine.dispose()
    log.info("records database at schema revision %s", revision)


def upgrade_sync(url: str, revision: str = "head") -> None:
    """`upgrade` for callers without an event loop (the command line)."""
    asyncio.run(upgrade(url, revision))


async def current_revision(url: str) -> str | None:
    """The revision the database is at, or None for an empty database."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_current_on)
    finally:
        await engine.dispose()


def _upgrade_on(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _current_on(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
