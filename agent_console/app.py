"""`create_app(config, ...)`: the aiohttp app, its route table, error mapping, background tasks.

Wiring (the composition root does this)::

    database = open_database(settings.database.url.value)
    app = create_app(web_config(settings.web), database=database,
                     chat_routing=None,         # or the ACD's ChatRouting adapter
                     offline_mailer=None,       # or outbound.offline_mailer (tickets.email)
                     customer_mail=None,        # or outbound.customer_mail: replies mailed
                     hooks=None)                # or the node's HelpDeskHooks: SLA, surveys
    web.run_app / AppRunner + TCPSite(settings.web.host, settings.web.port)
    # access_log_class=agent_console.access_log.MaskedAccessLogger: no survey token or query
    # string (customers' addresses) in the access log

Without ``hooks`` the app makes its own `HelpDeskHooks` on ``database`` (SLA clocks and
duplicates, no email surveys); the node passes the ones it builds from ``[helpdesk]``
(``survey_tokens``, ``survey_mail`` = the outbound mail, ``public_url``), so a ticket solved
here is mailed its survey link and ``/survey/{token}`` answers it.

``/metrics`` takes the bearer token ``web.metrics_token``; without one it answers loopback
clients only. ``/healthz`` is open and says nothing but ``ok``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from importlib import resources

from aiohttp import web
from aiohttp.typedefs import Handler

from acd.errors import AcdError
from acd.service import AcdService
from agent_console import api, auth, chat, survey_pages
from agent_console.agent_state import ACD, ACD_STATUS, AGENT_STATE_ROUTES
from agent_console.errors import (
    ConsoleError,
    CsrfRejected,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    OriginRejected,
    RateLimited,
)
from agent_console.routes import AGENTS, SPECS, STAFF, Access, RouteSpec, add_routes
from agent_console.schema import string
from agent_console.service import HelpDesk
from agent_console.state import CONFIG, DATABASE, HELPDESK, LOGIN_LIMITER, WebConfig
from callcenter.config import WebSettings
from tickets.chat import ChatEnded, ChatError, ChatMessageInvalid, ChatNotFound, ChatRouting
from tickets.db import Database
from tickets.email.outbox import CustomerMail
from tickets.errors import (
    CustomerNotFound,
    InvalidIdentity,
    InvalidLink,
    InvalidMerge,
    InvalidSplit,
    InvalidTransition,
    TicketClosed,
    TicketMerged,
    TicketNotFound,
    TicketsError,
)
from tickets.hooks import HelpDeskHooks
from tickets.repository import Clock, utc_now
from tickets.users import InvalidCredentials, InvalidUser, UserExists
from tickets.webhooks import DispatchPolicy, WebhookDispatcher, WebhookError, delivery_counts

log = logging.getLogger(__name__)

DISPATCHER = web.AppKey("webhook_dispatcher", WebhookDispatcher)

# error class -> HTTP status; the most specific class listed wins (checked along the MRO)
STATUS: dict[type[Exception], int] = {
    NotAuthenticated: 401,
    InvalidCredentials: 401,
    Forbidden: 403,
    CsrfRejected: 403,
    OriginRejected: 403,
    NotFound: 404,
    TicketNotFound: 404,
    CustomerNotFound: 404,
    ChatNotFound: 404,
    InvalidInput: 400,
    InvalidIdentity: 400,
    InvalidUser: 400,
    ChatMessageInvalid: 400,
    WebhookError: 400,
    InvalidTransition: 409,
    InvalidMerge: 409,
    InvalidSplit: 409,
    InvalidLink: 409,
    TicketMerged: 409,
    TicketClosed: 409,
    ChatEnded: 409,
    UserExists: 409,
    ChatError: 400,
    RateLimited: 429,
    ConsoleError: 400,
    TicketsError: 500,
    **ACD_STATUS,  # the ACD's errors (agent state routes)
}


def status_for(err: Exception) -> int:
    for klass in type(err).__mro__:
        if klass in STATUS:
            return STATUS[klass]
    return 500


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except (ConsoleError, TicketsError, AcdError) as err:
        status = status_for(err)
        if (
            status == 401
            and request.method == "GET"
            and "text/html" in request.headers.get("Accept", "")
        ):
            raise web.HTTPSeeOther(auth.login_url(request)) from None
        if status >= 500:
            log.error("%s %s failed: %s", request.method, request.path, err)
        body: dict[str, str] = {"error": err.error_id, "message": str(err)}
        field = getattr(err, "field", "")
        if field:
            body["field"] = field
        headers = {}
        if isinstance(err, RateLimited):
            headers["Retry-After"] = str(max(1, round(err.retry_after)))
        return web.json_response(body, status=status, headers=headers)


# -- small endpoints -------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    """Liveness: no data."""
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format."""
    hub = request.app[chat.HUB]
    async with request.app[DATABASE].sessions() as session:
        counts = await delivery_counts(session)
    lines = [
        "# HELP callcenter_web_chats_active Chats in progress on this node.",
        "# TYPE callcenter_web_chats_active gauge",
        f"callcenter_web_chats_active {len(hub.chats)}",
        "# HELP callcenter_web_agents_connected Agents connected to /agent/ws on this node.",
        "# TYPE callcenter_web_agents_connected gauge",
        f"callcenter_web_agents_connected {sum(1 for s in hub.agents.values() if s)}",
        "# HELP callcenter_web_chat_messages_total Chat messages stored by this node.",
        "# TYPE callcenter_web_chat_messages_total counter",
        f"callcenter_web_chat_messages_total {hub.messages}",
        "# HELP callcenter_webhook_deliveries Outbox rows by status.",
        "# TYPE callcenter_webhook_deliveries gauge",
    ]
    lines += [
        f'callcenter_webhook_deliveries{{status="{k}"}} {v}' for k, v in sorted(counts.items())
    ]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8")


def _static(name: str, content_type: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        body = resources.files("agent_console.static").joinpath(name).read_bytes()
        return web.Response(body=body, content_type=content_type, charset="utf-8")

    handler.__name__ = "static_" + name.replace("-", "_").replace(".", "_")
    return handler


async def agent_page(request: web.Request) -> web.Response:
    """The agent's chat page (the console proper comes later)."""
    body = resources.files("agent_console.static").joinpath("agent.html").read_text("utf-8")
    return web.Response(text=body, content_type="text/html")


P = Access.PUBLIC
ROUTES = (
    RouteSpec("GET", "/healthz", healthz, "Liveness (no data)", access=P, tag="meta"),
    RouteSpec(
        "GET",
        "/metrics",
        metrics,
        "Prometheus metrics",
        access=Access.METRICS,
        tag="meta",
        content_type="text/plain",
    ),
    RouteSpec(
        "GET",
        "/login",
        auth.login_form,
        "The sign-in form",
        access=P,
        tag="auth",
        content_type="text/html",
        query={"next": string(500)},
    ),
    RouteSpec(
        "POST",
        "/login",
        auth.login,
        "Sign in (form or JSON); sets the session cookie",
        access=P,
        tag="auth",
    ),
    RouteSpec("POST", "/logout", auth.logout, "Sign out", tag="auth"),
    RouteSpec(
        "GET",
        "/agent",
        agent_page,
        "The agent's chat page",
        roles=AGENTS,
        tag="console",
        content_type="text/html",
    ),
    RouteSpec("GET", "/agent/ws", chat.agent_ws, "Agent chat socket", roles=AGENTS, tag="chat"),
    RouteSpec(
        "GET",
        "/chat/ws",
        chat.chat_ws,
        "Visitor chat socket (same origin, visitor token in-band)",
        access=Access.VISITOR,
        tag="chat",
    ),
    RouteSpec(
        "GET",
        "/static/chat-widget.js",
        _static("chat-widget.js", "application/javascript"),
        "The chat widget",
        access=P,
        tag="chat",
        content_type="application/javascript",
    ),
    RouteSpec(
        "GET",
        "/static/chat-demo.html",
        _static("chat-demo.html", "text/html"),
        "A page embedding the widget",
        access=P,
        tag="chat",
        content_type="text/html",
    ),
    RouteSpec(
        "GET",
        "/survey/{token}",
        survey_pages.survey_page,
        "The customer's email survey page (the signed link is the credential)",
        access=Access.LINK,
        tag="surveys",
        content_type="text/html",
    ),
    RouteSpec(
        "POST",
        "/survey/{token}",
        survey_pages.survey_answer,
        "Answer the email survey (form fields score 1-5, resolved yes/no, comment); once",
        access=Access.LINK,
        tag="surveys",
        content_type="text/html",
    ),
    *api.API_ROUTES,
    *AGENT_STATE_ROUTES,
)


def web_config(settings: WebSettings) -> WebConfig:
    """The web app's view of the `[web]` settings (a random signing secret if none is set)."""
    secret = settings.secret.value
    if not secret:
        log.warning("web.secret is not set: visitor tokens will not survive a restart")
        secret = secrets.token_urlsafe(32)
    return WebConfig(
        secret=secret,
        metrics_token=settings.metrics_token.value,
        allowed_origins=settings.allowed_origins,
        cookie_secure=settings.cookie_secure,
        session_hours=settings.session_hours,
    )


def create_app(
    config: WebConfig,
    *,
    database: Database,
    chat_routing: ChatRouting | None = None,
    offline_mailer: chat.OfflineMailer | None = None,
    customer_mail: CustomerMail | None = None,
    webhook_policy: DispatchPolicy | None = None,
    run_webhooks: bool = True,
    hooks: HelpDeskHooks | None = None,
    clock: Clock = utc_now,
    acd: AcdService | None = None,
) -> web.Application:
    """The web app on `database` (already migrated). Without `chat_routing`, chats go to the
    agents connected to /agent/ws (`ConnectedAgentsRouting`). Without `hooks`, the help desk's
    follow-ups are `HelpDeskHooks(database.sessions, clock)` (no email surveys); given hooks
    should share ``clock``. Without `acd` the agent state routes answer 503 (no ACD here)."""
    app = web.Application(
        middlewares=[error_middleware, auth.auth_middleware], client_max_size=1024**2
    )
    app[CONFIG] = config
    app[DATABASE] = database
    app[HELPDESK] = HelpDesk(
        database.sessions,
        clock,
        customer_mail=customer_mail,
        hooks=hooks or HelpDeskHooks(database.sessions, clock),
    )
    app[LOGIN_LIMITER] = auth.login_limiter()
    if acd is not None:
        app[ACD] = acd
    app[survey_pages.SURVEY_LIMITER] = survey_pages.survey_limiter()
    hub = chat.ChatHub(chat.VisitorTokens(config.secret))
    app[chat.HUB] = hub
    app[chat.ROUTING] = chat_routing or chat.ConnectedAgentsRouting(hub)
    if offline_mailer is not None:
        app[chat.MAILER] = offline_mailer
    app[DISPATCHER] = WebhookDispatcher(database.sessions, webhook_policy or DispatchPolicy())
    add_routes(app, ROUTES)
    app.cleanup_ctx.append(chat.chat_hub_ctx)
    if run_webhooks:
        app.cleanup_ctx.append(_webhooks_ctx)
    assert all(spec.roles <= STAFF for spec in app[SPECS].values())
    return app


async def _webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[DISPATCHER].run(), name="webhook-dispatcher")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
