"""The web app's access log (real socket): survey link tokens and query strings never logged."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agent_console.access_log import MaskedAccessLogger, masked_path
from tickets.users import Role

from .test_web_app import add_users, start_web


async def test_given_the_masked_access_log_when_links_and_searches_are_requested_then_no_secrets(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app, database = await start_web(tmp_path, run_webhooks=False)
    tokens = await add_users(database)
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    server = TestServer(app)
    await server.start_server(access_log_class=MaskedAccessLogger)  # as the node's AppRunner
    async with TestClient(server) as client:
        survey = await client.get("/survey/eyJ0IjoxfQ.c2VjcmV0LXNpZ25hdHVyZQ")
        assert survey.status == 404  # no survey secret in this app
        search = await client.get(
            "/api/customers/search?email=ann@example.org",
            headers={"Authorization": f"Bearer {tokens[Role.AGENT]}"},
        )
        assert search.status == 200
    await database.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any('"GET /survey/…" 404' in line for line in lines), lines
    assert any('"GET /api/customers/search" 200' in line for line in lines), lines
    assert "c2VjcmV0LXNpZ25hdHVyZQ" not in caplog.text
    assert "ann@example.org" not in caplog.text


def test_given_paths_when_masked_then_only_link_tokens_change() -> None:
    assert masked_path("/survey/abc.def") == "/survey/…"
    assert masked_path("/survey/") == "/survey/"
    assert masked_path("/api/tickets/12") == "/api/tickets/12"
    assert masked_path("/api/survey/abc") == "/api/survey/abc"
