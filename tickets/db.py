"""Async engine and session factory for the records database (SQLite/aiosqlite, PostgreSQL/asyncpg).

SQLite notes: foreign keys are switched on, the journal is WAL for file databases, and every
transaction starts with `BEGIN IMMEDIATE` (the recipe in SQLAlchemy's aiosqlite documentation,
with the write lock taken up front) so that concurrent writers queue on the busy timeout instead
of failing with "database is locked" when a reader upgrades to a writer; SAVEPOINTs then work too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SQLITE_BUSY_TIMEOUT_MS = 30_000


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """An engine for `sqlite+aiosqlite://...` or `postgresql+asyncpg://...`."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = create_async_engine(
            parsed, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        )
        _configure_sqlite(engine, in_memory=parsed.database in (None, "", ":memory:"))
        return engine
    if backend == "postgresql":
        return create_async_engine(parsed, echo=echo, pool_pre_ping=True)
    raise ValueError(f"unsupported database backend {backend!r}: use sqlite or postgresql")


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions whose objects stay readable after commit (the service returns them)."""
    return async_sessionmaker(engine, expire_on_commit=False)


@dataclass(frozen=True, slots=True)
class Database:
    """An engine and its session factory, closed together."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    async def close(self) -> None:
        await self.engine.dispose()


def open_database(url: str, *, echo: bool = False) -> Database:
    """Build the engine and session factory for a URL (no connection is made yet)."""
    engine = create_engine(url, echo=echo)
    return Database(engine=engine, sessions=session_factory(engine))


def _configure_sqlite(engine: AsyncEngine, *, in_memory: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # let us emit BEGIN ourselves (and stop the driver committing before DDL)
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
