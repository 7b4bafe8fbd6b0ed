"""Revision 0002 (knowledge base, search DDL, service levels, surveys) goes down and up again."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError

from tickets.db import create_engine
from tickets.migrate import alembic_config, current_revision, upgrade

from .conftest import BACKENDS, POSTGRES_ADMIN_URL, _admin

OURS = {
    "kb_articles",
    "kb_article_versions",
    "kb_terms",
    "sla_calendars",
    "sla_policies",
    "ticket_sla",
    "survey_responses",
    "customer_link_suggestions",
}


def _downgrade_on(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


async def _downgrade(url: str, revision: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_downgrade_on, revision)
    finally:
        await engine.dispose()


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


@pytest.fixture(params=BACKENDS)
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    name = f"tickets_mig_{uuid.uuid4().hex[:8]}"
    try:
        await _admin(f'CREATE DATABASE "{name}"')
    except (OSError, SQLAlchemyError, TimeoutError) as err:
        reason = f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {err}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(f"{reason} (run .ci/run, which starts it)")
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(False)
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_given_revision_0002_when_downgraded_and_upgraded_then_schema_and_search_return(
    empty_url: str,
) -> None:
    await upgrade(empty_url, "0002")
    assert await _tables(empty_url) >= OURS
    await _downgrade(empty_url, "0001")
    assert await current_revision(empty_url) == "0001"
    assert not (await _tables(empty_url)) & (OURS | {"kb_fts", "tickets_fts"})
    await upgrade(empty_url, "0002")
    tables = await _tables(empty_url)
    assert tables >= OURS
    if "sqlite" in empty_url:
        assert {"kb_fts", "tickets_fts"} <= tables
