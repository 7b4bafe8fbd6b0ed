"""Fixtures: the help desk schema (from the Alembic revisions) on real SQLite and real PostgreSQL.

Each test session migrates one SQLite file and one uniquely named PostgreSQL database (created
on the server's `test` database, dropped at the end), and each test starts from empty tables.
An unreachable PostgreSQL fails the run in CI (`CI=true`) and skips its half elsewhere.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

from tickets import chat, users, webhooks
from tickets.db import Database, open_database
from tickets.migrate import upgrade
from tickets.models import Base
from tickets.schema import MODEL_MODULES

WEB_MODEL_MODULES = (chat, users, webhooks)  # the `db` fixture empties their tables too
assert MODEL_MODULES  # every model module imported: the `db` fixture empties all their tables

POSTGRES_ADMIN_URL = os.environ.get(
    "CALLCENTER_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite", "postgresql"]


async def _admin(statement: str) -> None:
    engine = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with asyncio.timeout(10), engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def sqlite_schema_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("tickets") / "tickets.db"
    url = f"sqlite+aiosqlite:///{path}"
    asyncio.run(upgrade(url))
    return url


@pytest.fixture(scope="session")
def postgresql_schema_url() -> Iterator[str]:
    name = f"tickets_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, SQLAlchemyError, TimeoutError) as err:
        reason = f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {err}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(f"{reason} (run .ci/run, which starts it)")
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        asyncio.run(upgrade(url))
        yield url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest) -> str:
    """The URL of a migrated database, once per backend."""
    url: str = request.getfixturevalue(f"{request.param}_schema_url")
    return url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """A migrated database with every table emptied."""
    database = open_database(db_url)
    tables = [table.name for table in reversed(Base.metadata.sorted_tables)]
    async with database.engine.begin() as connection:
        if database.backend == "postgresql":
            await connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                await connection.execute(text(f"DELETE FROM {table}"))
    try:
        yield database
    finally:
        await database.close()


@dataclass
class FakeClock:
    """A settable UTC clock for the service's time rules."""

    now: datetime = field(default_factory=lambda: datetime(2026, 3, 2, 9, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
