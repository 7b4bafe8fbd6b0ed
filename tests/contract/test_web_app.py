"""The web app over a real socket: each route's access rule, OpenAPI, login, CSRF, the REST API."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate as validate_openapi
from sqlalchemy import select

from agent_console.app import create_app
from agent_console.routes import SPECS, Access
from agent_console.state import WebConfig
from tickets.db import Database, open_database
from tickets.migrate import upgrade
from tickets.models import AuditEvent
from tickets.users import Role, UserDirectory

PASSWORD = "correct horse battery"


@dataclass
class Web:
    app: web.Application
    client: TestClient[web.Request, web.Application]
    database: Database
    tokens: dict[Role, str]

    def auth(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


async def start_web(
    tmp_path: Path, *, database: Database | None = None, **kwargs: Any
) -> tuple[web.Application, Database]:
    """The app on ``database`` (a migrated one), or on a new SQLite file under ``tmp_path``."""
    if database is None:
        url = f"sqlite+aiosqlite:///{tmp_path / 'web.db'}"
        await upgrade(url)
        database = open_database(url)
    config = WebConfig(secret="s" * 32, metrics_token="metrics-secret", cookie_secure=False)
    return create_app(config, database=database, **kwargs), database


async def add_users(database: Database) -> dict[Role, str]:
    tokens = {}
    async with database.sessions.begin() as session:
        users = UserDirectory(session)
        for role in Role:
            user = await users.add(f"{role}1", PASSWORD, role, actor="test")
            tokens[role] = (await users.issue_token(user, "test", actor="test")).value
    return tokens


@pytest.fixture
async def site(tmp_path: Path, db: Database) -> AsyncIterator[Web]:
    """The app with one user per role, on SQLite and on PostgreSQL (the `db` fixture)."""
    app, database = await start_web(tmp_path, database=db, run_webhooks=False)
    tokens = await add_users(database)
    async with TestClient(TestServer(app)) as client:
        yield Web(app, client, database, tokens)
    await database.close()


def _concrete(path: str) -> str:
    return re.sub(r"\{\w+\}", "1", path)


EXPECTED_OPEN = {
    ("GET", "/healthz"): Access.PUBLIC,
    ("GET", "/login"): Access.PUBLIC,
    ("POST", "/login"): Access.PUBLIC,
    ("GET", "/static/chat-widget.js"): Access.PUBLIC,
    ("GET", "/static/chat-demo.html"): Access.PUBLIC,
    ("GET", "/metrics"): Access.METRICS,
    ("GET", "/chat/ws"): Access.VISITOR,
    ("GET", "/survey/{token}"): Access.LINK,
    ("POST", "/survey/{token}"): Access.LINK,
}


async def test_given_every_route_when_called_anonymously_or_with_wrong_role_then_refused(
    site: Web,
) -> None:
    routed = {
        (r.method, r.resource.canonical)
        for r in site.app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    specs = site.app[SPECS]
    assert routed == set(specs)
    # only these answer without a user: healthz (no data), login form, static widget files,
    # metrics (its own token), the visitor chat socket (origin check + visitor token) and the
    # email survey page (the signed link is the credential: tests/contract/test_web_surveys.py)
    assert {k: s.access for k, s in specs.items() if s.access != Access.USER} == EXPECTED_OPEN
    for (method, path), spec in specs.items():
        if spec.access != Access.USER:
            continue
        anonymous = await site.client.request(method, _concrete(path))
        assert anonymous.status == 401, (method, path)
        bad = await site.client.request(
            method, _concrete(path), headers={"Authorization": "Bearer cct_forged"}
        )
        assert bad.status == 401, (method, path)
        for role in set(Role) - spec.roles:
            wrong = await site.client.request(method, _concrete(path), headers=site.auth(role))
            assert wrong.status == 403, (method, path, role)
            assert (await wrong.json())["error"] == "forbidden"


async def test_given_metrics_when_token_missing_then_refused_and_with_token_prometheus_text(
    site: Web,
) -> None:
    assert (await site.client.get("/metrics")).status == 401
    ok = await site.client.get("/metrics", headers={"Authorization": "Bearer metrics-secret"})
    assert ok.status == 200
    assert "callcenter_web_chats_active 0" in await ok.text()
    health = await site.client.get("/healthz")
    assert await health.json() == {"status": "ok"}


async def test_given_app_when_openapi_fetched_then_valid_31_and_matches_routes(site: Web) -> None:
    response = await site.client.get("/api/openapi.json", headers=site.auth(Role.AGENT))
    document = await response.json()
    validate_openapi(document)
    assert document["openapi"] == "3.1.0"
    documented = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert documented == set(site.app[SPECS].keys())


async def test_given_login_form_when_password_right_then_secure_cookie_and_audit(
    site: Web,
) -> None:
    response = await site.client.post(
        "/login",
        data={"username": "agent1", "password": PASSWORD, "next": "/agent"},
        allow_redirects=False,
    )
    assert response.status == 303
    assert response.headers["Location"] == "/agent"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    me = await site.client.get("/api/me")
    assert (await me.json())["username"] == "agent1"
    async with site.database.sessions() as session:
        actions = list((await session.execute(select(AuditEvent.action))).scalars())
    assert "user.logged_in" in actions


async def test_given_session_when_post_without_csrf_token_then_rejected(site: Web) -> None:
    login = await site.client.post(
        "/login", json={"username": "agent1", "password": PASSWORD}, allow_redirects=False
    )
    csrf = (await login.json())["csrf_token"]
    ticket = {"subject": "Printer"}
    refused = await site.client.post("/api/tickets", json=ticket)
    assert refused.status == 403
    assert (await refused.json())["error"] == "csrf-rejected"
    accepted = await site.client.post("/api/tickets", json=ticket, headers={"X-CSRF-Token": csrf})
    assert accepted.status == 201


async def test_given_wrong_passwords_when_repeated_then_rate_limited_and_failures_audited(
    site: Web,
) -> None:
    statuses = []
    for _ in range(7):
        response = await site.client.post(
            "/login", json={"username": "agent1", "password": "wrong password"}
        )
        statuses.append(response.status)
    assert statuses[:5] == [401] * 5
    assert statuses[5:] == [429, 429]
    async with site.database.sessions() as session:
        query = select(AuditEvent).where(AuditEvent.action == "user.login_failed")
        assert len(list((await session.execute(query)).scalars())) == 5


async def test_given_ticket_api_when_created_updated_and_replied_then_history_complete(
    site: Web,
) -> None:
    agent = site.auth(Role.AGENT)
    created = await site.client.post(
        "/api/tickets", json={"subject": "No dial tone", "priority": "high"}, headers=agent
    )
    ticket = await created.json()
    assert created.status == 201
    path = f"/api/tickets/{ticket['id']}"
    patched = await site.client.patch(
        path, json={"status": "open", "assignee": "agent1", "add_tags": ["line"]}, headers=agent
    )
    assert (await patched.json())["tags"] == ["line"]
    reply = await site.client.post(
        f"{path}/messages", json={"kind": "note", "body": "<b>checked</b>"}, headers=agent
    )
    assert reply.status == 201
    full = await (await site.client.get(path, headers=agent)).json()
    assert full["messages"][0]["body"] == "<b>checked</b>"
    assert full["messages"][0]["internal"] is True
    assert {e["action"] for e in full["history"]} >= {"ticket.created", "message.added"}
    listed = await site.client.get("/api/tickets?status=open&limit=10", headers=agent)
    assert (await listed.json())["total"] == 1


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/tickets", {"subject": ""}, "subject"),
        ("POST", "/api/tickets", {"subject": "x", "priority": "asap"}, "priority"),
        ("POST", "/api/tickets", {"subject": "x", "extra": 1}, "extra"),
        ("PATCH", "/api/tickets/1", {"status": "done"}, "status"),
        ("GET", "/api/tickets?limit=1000", None, "limit"),
        ("GET", "/api/tickets?colour=red", None, "colour"),
        ("GET", "/api/tickets/abc", None, "ticket_id"),
        ("GET", "/api/customers/search?phone=hello", None, "phone"),
    ],
)
async def test_given_bad_input_when_sent_then_400_naming_the_field(
    site: Web, method: str, path: str, body: Any, field: str
) -> None:
    response = await site.client.request(method, path, json=body, headers=site.auth(Role.AGENT))
    assert response.status == 400
    error = await response.json()
    assert error["error"] == "invalid-input"
    assert error["field"] == field


async def test_given_missing_ticket_and_bad_transition_when_called_then_404_and_409(
    site: Web,
) -> None:
    agent = site.auth(Role.AGENT)
    missing = await site.client.get("/api/tickets/999", headers=agent)
    assert (missing.status, (await missing.json())["error"]) == (404, "ticket-not-found")
    ticket = await (
        await site.client.post("/api/tickets", json={"subject": "a"}, headers=agent)
    ).json()
    path = f"/api/tickets/{ticket['id']}"
    await site.client.patch(path, json={"status": "closed"}, headers=agent)
    again = await site.client.patch(path, json={"status": "open"}, headers=agent)
    assert again.status == 409


async def test_given_customer_with_tickets_when_searched_by_email_then_found_with_tickets(
    site: Web,
) -> None:
    from tickets.customers import CustomerDirectory
    from tickets.models import IdentityKind

    async with site.database.sessions.begin() as session:
        found = await CustomerDirectory(session).find_or_create(
            IdentityKind.EMAIL, "Ann@Example.org", actor="test"
        )
        customer_id = found.customer.id
    agent = site.auth(Role.AGENT)
    await site.client.post(
        "/api/tickets", json={"subject": "hello", "customer_id": customer_id}, headers=agent
    )
    result = await (
        await site.client.get("/api/customers/search?email=ann@example.org", headers=agent)
    ).json()
    assert result["known"]["id"] == customer_id
    assert [t["subject"] for t in result["known"]["tickets"]] == ["hello"]
    assert result["known"]["identities"][0]["value"] == "ann@example.org"
