"""The REST API under /api: tickets, customers, webhook subscriptions, users and tokens, OpenAPI.

Each handler resolves its input (already validated against the route's schema by the auth
middleware), calls the `HelpDesk` service and answers JSON. Who may call what is in the route
table at the bottom, which is also the OpenAPI document served at ``/api/openapi.json``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import select

from agent_console.errors import InvalidInput, NotFound
from agent_console.routes import (
    ADMINS,
    JSON_BODY,
    QUERY,
    SPECS,
    STAFF,
    SUPERVISORS,
    RouteSpec,
    openapi_document,
    path_int,
)
from agent_console.schema import enum, obj, string
from agent_console.state import DATABASE, HELPDESK, PRINCIPAL, principal
from tickets.models import Channel, LinkKind, Priority, TicketStatus
from tickets.surveys import ReportBy
from tickets.users import Role, UserDirectory
from tickets.webhooks import WebhookEvent, WebhookSubscription, subscribe

TAGS = {"type": "array", "items": string(64, min_length=1), "maxItems": 50}
IDS = {"type": "array", "items": {"type": "integer", "minimum": 1}, "maxItems": 500}
TICKET = obj(
    {
        "id": {"type": "integer"},
        "number": {"type": "string"},
        "subject": {"type": "string"},
        "status": enum(TicketStatus),
        "priority": enum(Priority),
        "channel": enum(Channel),
        "assignee": {"type": ["string", "null"]},
        "tags": TAGS,
    },
    required=("id", "number", "subject", "status"),
)
TICKET_CREATE = obj(
    {
        "subject": string(300, min_length=1),
        "channel": enum(Channel),
        "priority": enum(Priority),
        "customer_id": {"type": "integer", "minimum": 1},
        "queue": string(64),
        "skills": TAGS,
        "tags": TAGS,
        "body": string(100_000),
    },
    required=("subject",),
)
TICKET_UPDATE = obj(
    {
        "status": enum(TicketStatus),
        "priority": enum(Priority),
        "assignee": {"type": ["string", "null"], "maxLength": 64},
        "tier": {"type": "integer", "minimum": 1, "maximum": 3},
        "add_tags": TAGS,
        "remove_tags": TAGS,
    },
    minProperties=1,
)
MESSAGE_CREATE = obj(
    {"kind": enum(("reply", "note")), "body": string(100_000, min_length=1)},
    required=("body",),
)
MERGE = obj({"into_ticket_id": {"type": "integer", "minimum": 1}}, required=("into_ticket_id",))
LINK = obj(
    {
        "ticket_id": {"type": "integer", "minimum": 1},
        "kind": enum((LinkKind.RELATED, LinkKind.DUPLICATE)),
    },
    required=("ticket_id",),
)
SPLIT = obj(
    {"call_record_ids": IDS, "message_ids": IDS, "subject": string(300, min_length=1)},
)
WEBHOOK_CREATE = obj(
    {"url": string(500, min_length=8), "events": {"type": "array", "items": enum(WebhookEvent)}},
    required=("url", "events"),
)
USER_CREATE = obj(
    {
        "username": string(64, min_length=1),
        "password": string(1024, min_length=10),
        "role": enum(Role),
        "display_name": string(200),
    },
    required=("username", "password", "role"),
)
TOKEN_CREATE = obj({"name": string(100, min_length=1)}, required=("name",))
LIST_QUERY = {
    "status": enum(TicketStatus),
    "priority": enum(Priority),
    "channel": enum(Channel),
    "assignee": string(64, min_length=1),
    "customer_id": {"type": "integer", "minimum": 1},
    "queue": string(64),
    "tag": string(64, min_length=1),
    "q": string(200, min_length=1),
    "limit": {"type": "integer", "minimum": 1, "maximum": 100},
    "offset": {"type": "integer", "minimum": 0},
}
SEARCH_QUERY = {"phone": string(64, min_length=1), "email": string(320, min_length=3)}
CSAT_QUERY = {
    "by": enum(ReportBy),
    "since": string(10, min_length=10, description="first day, YYYY-MM-DD (UTC)"),
    "until": string(10, min_length=10, description="last day, YYYY-MM-DD (UTC), inclusive"),
}
REPORT_DAYS = 30
MAX_REPORT_DAYS = 366


def _body(request: web.Request) -> dict[str, Any]:
    body: dict[str, Any] = request[JSON_BODY]
    return body


def _query(request: web.Request) -> dict[str, Any]:
    query: dict[str, Any] = request[QUERY]
    return query


def _actor(request: web.Request) -> str:
    return f"user:{principal(request).username}"


async def list_tickets(request: web.Request) -> web.Response:
    return web.json_response(await request.app[HELPDESK].list_tickets(_query(request)))


async def create_ticket(request: web.Request) -> web.Response:
    out = await request.app[HELPDESK].create_ticket(_body(request), actor=_actor(request))
    return web.json_response(out, status=201)


async def get_ticket(request: web.Request) -> web.Response:
    return web.json_response(await request.app[HELPDESK].get_ticket(path_int(request, "ticket_id")))


async def update_ticket(request: web.Request) -> web.Response:
    out = await request.app[HELPDESK].update_ticket(
        path_int(request, "ticket_id"), _body(request), actor=_actor(request)
    )
    return web.json_response(out)


async def add_ticket_message(request: web.Request) -> web.Response:
    out = await request.app[HELPDESK].add_message(
        path_int(request, "ticket_id"),
        _body(request),
        actor=_actor(request),
        author=principal(request).username,
    )
    return web.json_response(out, status=201)


async def merge_ticket(request: web.Request) -> web.Response:
    out = await request.app[HELPDESK].merge(
        path_int(request, "ticket_id"), _body(request)["into_ticket_id"], actor=_actor(request)
    )
    return web.json_response(out)


async def link_ticket(request: web.Request) -> web.Response:
    body = _body(request)
    out = await request.app[HELPDESK].link(
        path_int(request, "ticket_id"),
        body["ticket_id"],
        LinkKind(body.get("kind", LinkKind.RELATED)),
        actor=_actor(request),
    )
    return web.json_response(out, status=201)


async def split_ticket(request: web.Request) -> web.Response:
    out = await request.app[HELPDESK].split(
        path_int(request, "ticket_id"), _body(request), actor=_actor(request)
    )
    return web.json_response(out, status=201)


async def get_customer(request: web.Request) -> web.Response:
    customer_id = path_int(request, "customer_id")
    return web.json_response(await request.app[HELPDESK].get_customer(customer_id))


async def search_customers(request: web.Request) -> web.Response:
    query = _query(request)
    if ("phone" in query) == ("email" in query):
        raise InvalidInput("give exactly one of phone or email", field="phone")
    out = await request.app[HELPDESK].search_customers(
        phone=query.get("phone", ""), email=query.get("email", "")
    )
    return web.json_response(out)


def _day(query: dict[str, Any], name: str, default: date) -> date:
    if name not in query:
        return default
    try:
        return date.fromisoformat(query[name])
    except ValueError as err:
        raise InvalidInput(f"{name}: expected a day as YYYY-MM-DD", field=name) from err


async def csat_report(request: web.Request) -> web.Response:
    """Satisfaction (IVR, email and chat surveys) per queue, agent, channel or day."""
    query = _query(request)
    today = request.app[HELPDESK].clock().astimezone(UTC).date()
    until = _day(query, "until", today)
    since = _day(query, "since", until - timedelta(days=REPORT_DAYS - 1))
    if not timedelta(0) <= until - since < timedelta(days=MAX_REPORT_DAYS):
        raise InvalidInput(
            f"since: from since to until is 1 to {MAX_REPORT_DAYS} days", field="since"
        )
    out = await request.app[HELPDESK].csat_report(
        ReportBy(query.get("by", ReportBy.CHANNEL)),
        since=datetime.combine(since, time.min, UTC),
        until=datetime.combine(until + timedelta(days=1), time.min, UTC),
    )
    return web.json_response(out)


async def create_webhook(request: web.Request) -> web.Response:
    body = _body(request)
    async with request.app[DATABASE].sessions.begin() as session:
        sub = await subscribe(session, body["url"], body["events"], actor=_actor(request))
        out = _webhook_json(sub) | {"secret": sub.secret}
    return web.json_response(out, status=201)


async def list_webhooks(request: web.Request) -> web.Response:
    async with request.app[DATABASE].sessions() as session:
        rows = (
            await session.execute(select(WebhookSubscription).order_by(WebhookSubscription.id))
        ).scalars()
        return web.json_response({"items": [_webhook_json(s) for s in rows]})


def _webhook_json(sub: WebhookSubscription) -> dict[str, Any]:
    return {"id": sub.id, "url": sub.url, "events": sub.events, "active": sub.active}


async def create_user(request: web.Request) -> web.Response:
    body = _body(request)
    async with request.app[DATABASE].sessions.begin() as session:
        user = await UserDirectory(session).add(
            body["username"],
            body["password"],
            body["role"],
            actor=_actor(request),
            display_name=body.get("display_name", ""),
        )
        out = {"id": user.id, "username": user.username, "role": str(user.role)}
    return web.json_response(out, status=201)


async def create_token(request: web.Request) -> web.Response:
    """A new API token for the caller (shown once)."""
    me = principal(request)
    async with request.app[DATABASE].sessions.begin() as session:
        directory = UserDirectory(session)
        user = await directory.by_username(me.username)
        if user is None:
            raise NotFound("the user is gone")
        issued = await directory.issue_token(user, _body(request)["name"], actor=_actor(request))
    return web.json_response({"token": issued.value, "role": str(me.role)}, status=201)


async def whoami(request: web.Request) -> web.Response:
    me = request[PRINCIPAL]
    return web.json_response({"username": me.username, "role": str(me.role), "via": me.via})


async def openapi(request: web.Request) -> web.Response:
    document = openapi_document(
        request.app[SPECS].values(), title="callcenter help desk API", version="1"
    )
    return web.json_response(document)


def _t(method: str, path: str, handler: Any, summary: str, **kw: Any) -> RouteSpec:
    return RouteSpec(method, path, handler, summary, tag=kw.pop("tag", "tickets"), **kw)


API_ROUTES = (
    _t("GET", "/api/tickets", list_tickets, "List tickets (filters, pagination)", query=LIST_QUERY),
    _t(
        "POST",
        "/api/tickets",
        create_ticket,
        "Create a ticket",
        body=TICKET_CREATE,
        response=TICKET,
    ),
    _t(
        "GET",
        "/api/tickets/{ticket_id}",
        get_ticket,
        "A ticket with messages, calls, links, history",
    ),
    _t(
        "PATCH",
        "/api/tickets/{ticket_id}",
        update_ticket,
        "Change status, priority, assignee, tags",
        body=TICKET_UPDATE,
        response=TICKET,
    ),
    _t(
        "POST",
        "/api/tickets/{ticket_id}/messages",
        add_ticket_message,
        "Reply or add an internal note",
        body=MESSAGE_CREATE,
    ),
    _t(
        "POST",
        "/api/tickets/{ticket_id}/merge",
        merge_ticket,
        "Merge this ticket into another",
        body=MERGE,
    ),
    _t(
        "POST",
        "/api/tickets/{ticket_id}/links",
        link_ticket,
        "Link this ticket to another",
        body=LINK,
    ),
    _t(
        "POST",
        "/api/tickets/{ticket_id}/split",
        split_ticket,
        "Split calls/messages off to a new ticket",
        body=SPLIT,
    ),
    _t(
        "GET",
        "/api/customers/search",
        search_customers,
        "Find customers by phone or email",
        query=SEARCH_QUERY,
        tag="customers",
    ),
    _t(
        "GET",
        "/api/customers/{customer_id}",
        get_customer,
        "A customer with identities and tickets",
        tag="customers",
    ),
    _t(
        "GET",
        "/api/reports/csat",
        csat_report,
        "Customer satisfaction (CSAT) by queue, agent, channel or day",
        query=CSAT_QUERY,
        roles=SUPERVISORS,
        tag="reports",
    ),
    _t(
        "GET",
        "/api/webhooks",
        list_webhooks,
        "List webhook subscriptions",
        roles=ADMINS,
        tag="webhooks",
    ),
    _t(
        "POST",
        "/api/webhooks",
        create_webhook,
        "Subscribe a URL to events (secret shown once)",
        body=WEBHOOK_CREATE,
        roles=ADMINS,
        tag="webhooks",
    ),
    _t(
        "POST",
        "/api/users",
        create_user,
        "Create a user",
        body=USER_CREATE,
        roles=ADMINS,
        tag="users",
    ),
    _t(
        "POST",
        "/api/tokens",
        create_token,
        "Issue an API token for yourself (shown once)",
        body=TOKEN_CREATE,
        tag="users",
    ),
    _t("GET", "/api/me", whoami, "Who am I", roles=STAFF, tag="users"),
    _t("GET", "/api/openapi.json", openapi, "This document", tag="meta"),
)
