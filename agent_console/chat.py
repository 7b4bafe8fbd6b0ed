"""The chat channel live: visitor socket (/chat/ws), agent socket (/agent/ws), routing, offline.

Visitor protocol (JSON text frames). The widget sends ``hello`` (with the visitor token it was
given before, if any, and optionally ``name``, ``email``, ``topic`` and ``language``) and gets
``welcome`` with a signed token (``<visitor id>.<hmac>``: no login, but nobody can take over
another visitor's chats) and, when that visitor has a chat going on this node, its ``chat_id``
(the socket rejoins it). Then ``message`` (text, stored as typed, rendered escaped), ``typing``,
``end``, ``rate`` (1..5 after the end, once: also the chat's survey answer) and, when no agent
could take the chat, ``offline_message`` (name, email, text: an email ticket and an
acknowledgement to that address). The server sends ``message``, ``typing``, ``waiting``
(position and expected wait in seconds while the chat waits in its queue), ``assigned``,
``offline``, ``ended``, ``rated`` and ``error`` (with the error id; nothing is dropped
silently).

The first message opens the chat and hands it to the `ChatRouting` port (the ACD, or the
connected agents without one) in a task of its own, so the visitor can go on typing, or end the
chat, while it waits. The chat ends when either side ends it or when its visitor's last socket
has been gone for ``visitor_grace`` seconds; the router is then told (`ChatRouting.ended`), so a
waiting chat is abandoned and an answered one frees the agent.

Agents get ``chat.assigned`` (with the transcript; again for each of their chats when their
socket reconnects), ``message``, ``typing`` and ``ended``, and send ``message``, ``typing`` and
``end`` naming the ``chat_id``.

Live state is per node (one visitor's sockets and the agent they talk to meet on one node);
the records are in SQL, so a restart loses no transcript. Storing a chat's ticket and
messages runs the help desk's follow-ups (`HelpDesk.ticket_created`, `message_stored`,
`status_changed`: SLA clock, first response) in the same transaction; ending a chat leaves its
ticket's status as it is (the agent solves it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import WSMsgType, web
from sqlalchemy.exc import SQLAlchemyError

from agent_console.errors import ConsoleError
from agent_console.ratelimit import RateLimiter
from agent_console.service import message_json
from agent_console.state import DATABASE, HELPDESK, principal
from callcenter.logmask import mask_email
from tickets.chat import (
    CHAT_QUEUE,
    ChatRecords,
    ChatRouting,
    ChatWaiting,
    ChatWorkItem,
    WaitListener,
)
from tickets.errors import TicketsError
from tickets.models import LinkKind
from tickets.repository import TicketRepository
from tickets.webhooks import WebhookEvent, enqueue

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 16 * 1024
AGENT_CHAT_CAPACITY = 3
VISITOR_GRACE = 30.0  # seconds a chat outlives its visitor's last socket (a reload reconnects)
MAX_TOPIC_CHARS = 64


class OfflineMailer(Protocol):
    """Sends the acknowledgement of an offline message (adapter: `chat_mail.SmtpOfflineMailer`)."""

    async def acknowledge(
        self, *, ticket_id: int, number: str, to: str, name: str, text: str
    ) -> None: ...


class VisitorTokens:
    """``<visitor id>.<HMAC-SHA256(secret, visitor id)>``: a visitor's identity without a login."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"chat-visitor:" + secret.encode()).digest()

    def issue(self) -> tuple[str, str]:
        visitor_id = "v_" + secrets.token_urlsafe(16)
        return visitor_id, f"{visitor_id}.{self._mac(visitor_id)}"

    def verify(self, token: str) -> str | None:
        visitor_id, _, mac = token.rpartition(".")
        if not visitor_id or not hmac.compare_digest(mac, self._mac(visitor_id)):
            return None
        return visitor_id

    def _mac(self, visitor_id: str) -> str:
        return hmac.new(self._key, visitor_id.encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(slots=True)
class LiveChat:
    chat_id: int
    ticket_id: int
    number: str
    visitor_id: str
    visitor_name: str
    agent: str | None = None
    visitors: set[web.WebSocketResponse] = field(default_factory=set)
    item: ChatWorkItem | None = None
    routing: asyncio.Task[None] | None = None
    gone: asyncio.TimerHandle | None = None
    ended: bool = False


class ChatHub:
    """Who is connected (visitors, agents) and which chat is where, on this node."""

    def __init__(self, tokens: VisitorTokens, visitor_grace: float = VISITOR_GRACE) -> None:
        self.tokens = tokens
        self.visitor_grace = visitor_grace
        self.agents: dict[str, set[web.WebSocketResponse]] = {}
        self.chats: dict[int, LiveChat] = {}
        self.limiter = RateLimiter(burst=8, per_second=1.0)
        self.messages = 0
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        """A background task of the chat channel, cancelled when the app stops."""
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def of_visitor(self, visitor_id: str) -> LiveChat | None:
        """The visitor's chat going on on this node, if any."""
        for chat in self.chats.values():
            if chat.visitor_id == visitor_id and not chat.ended:
                return chat
        return None

    def connected(self, agent: str) -> bool:
        """Whether the agent has a console socket open on this node."""
        return bool(self.agents.get(agent))

    def load(self, agent: str) -> int:
        return sum(1 for c in self.chats.values() if c.agent == agent)

    async def to_agent(self, agent: str | None, frame: dict[str, Any]) -> None:
        for ws in list(self.agents.get(agent or "", ())):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_json(frame)

    async def to_visitors(self, chat: LiveChat, frame: dict[str, Any]) -> None:
        for ws in list(chat.visitors):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_json(frame)

    async def close_all(self) -> None:
        for chat in self.chats.values():
            if chat.gone is not None:
                chat.gone.cancel()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        sockets = {ws for group in self.agents.values() for ws in group}
        sockets |= {ws for chat in self.chats.values() for ws in chat.visitors}
        for ws in sockets:
            await ws.close(code=1001, message=b"server shutting down")


class ConnectedAgentsRouting:
    """`ChatRouting` until the ACD is wired: the least-loaded agent connected to /agent/ws.

    ``is_open`` says whether chat is staffed now (business hours); closed means nobody takes it.
    """

    def __init__(self, hub: ChatHub, is_open: Callable[[], bool] = lambda: True) -> None:
        self.hub = hub
        self.is_open = is_open

    async def offer(self, item: ChatWorkItem, on_wait: WaitListener | None = None) -> str | None:
        if not self.is_open():
            return None
        candidates = [
            (self.hub.load(agent), agent)
            for agent, sockets in self.hub.agents.items()
            if sockets and self.hub.load(agent) < AGENT_CHAT_CAPACITY
        ]
        return min(candidates)[1] if candidates else None

    async def ended(self, item: ChatWorkItem) -> None:
        """Nothing is held for a chat here."""


HUB = web.AppKey("chat_hub", ChatHub)
ROUTING = web.AppKey("chat_routing", ChatRouting)
MAILER = web.AppKey("chat_mailer", OfflineMailer)


def _error(err: Exception) -> dict[str, Any]:
    error_id = getattr(err, "error_id", "chat-error")
    return {"type": "error", "error": error_id, "message": str(err)}


async def _frames(ws: web.WebSocketResponse) -> AsyncIterator[dict[str, Any] | None]:
    """Decoded JSON objects; None for a frame that is not one (answered with an error)."""
    async for msg in ws:
        if msg.type != WSMsgType.TEXT:
            if msg.type == WSMsgType.ERROR:
                return
            yield None
            continue
        try:
            frame = json.loads(msg.data)
        except ValueError:
            yield None
            continue
        yield frame if isinstance(frame, dict) else None


# -- visitor side ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Visitor:
    visitor_id: str = ""
    name: str = ""
    email: str = ""
    topic: str = ""
    language: str = ""
    chat: LiveChat | None = None
    last_chat_id: int | None = None

    def current(self) -> LiveChat | None:
        """The visitor's live chat; one that ended meanwhile becomes the one to rate."""
        if self.chat is not None and self.chat.ended:
            self.last_chat_id, self.chat = self.chat.chat_id, None
        return self.chat


async def chat_ws(request: web.Request) -> web.StreamResponse:
    """The chat widget's socket (same-origin only; the visitor token travels in-band)."""
    ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, heartbeat=30)
    await ws.prepare(request)
    me = _Visitor()
    try:
        async for frame in _frames(ws):
            if frame is None:
                await ws.send_json(
                    {"type": "error", "error": "chat-frame-invalid", "message": "send JSON objects"}
                )
                continue
            try:
                await _visitor_frame(request, ws, me, frame)
            except (ConsoleError, TicketsError) as err:
                await ws.send_json(_error(err))
    finally:
        if me.chat is not None:
            _left(request.app, me.chat, ws)
    return ws


def _left(app: web.Application, live: LiveChat, ws: web.WebSocketResponse) -> None:
    """A visitor socket closed: with none left, the chat ends after the grace period."""
    live.visitors.discard(ws)
    if live.visitors or live.ended:
        return
    hub = app[HUB]

    def gone() -> None:
        live.gone = None
        if not live.visitors and not live.ended:
            hub.spawn(
                _end(app, live, actor="system:chat-visitor-gone"), f"chat-{live.chat_id}-gone"
            )

    if live.gone is not None:
        live.gone.cancel()
    live.gone = asyncio.get_running_loop().call_later(hub.visitor_grace, gone)


def _join(live: LiveChat, ws: web.WebSocketResponse) -> None:
    live.visitors.add(ws)
    if live.gone is not None:
        live.gone.cancel()
        live.gone = None


def _topic(value: Any) -> str:
    text = str(value or "").strip().lower()
    if len(text) > MAX_TOPIC_CHARS or not all(c.isalnum() or c in "-_." for c in text):
        raise ConsoleError(f"a topic is at most {MAX_TOPIC_CHARS} of a-z, 0-9, '-', '_', '.'")
    return text


async def _visitor_frame(
    request: web.Request, ws: web.WebSocketResponse, me: _Visitor, frame: dict[str, Any]
) -> None:
    hub = request.app[HUB]
    kind = frame.get("type")
    if kind == "hello":
        topic, language = _topic(frame.get("topic")), _topic(frame.get("language"))[:16]
        token = str(frame.get("token") or "")
        visitor_id = hub.tokens.verify(token) if token else None
        if visitor_id is None:
            visitor_id, token = hub.tokens.issue()
        if me.chat is not None and me.visitor_id != visitor_id:
            _left(request.app, me.chat, ws)
            me.chat = None
        me.visitor_id = visitor_id
        me.name = str(frame.get("name") or "")[:200]
        me.email = str(frame.get("email") or "")[:320]
        me.topic, me.language = topic, language
        welcome: dict[str, Any] = {
            "type": "welcome",
            "token": token,
            "online": any(hub.agents.values()),
        }
        live = hub.of_visitor(visitor_id)
        if live is not None:  # the same visitor again (a reload): rejoin the chat
            _join(live, ws)
            me.chat = live
            welcome["chat_id"] = live.chat_id
        await ws.send_json(welcome)
        return
    if not me.visitor_id:
        await ws.send_json(
            {"type": "error", "error": "chat-hello-first", "message": "say hello first"}
        )
        return
    live = me.current()
    if kind == "message":
        hub.limiter.hit(me.visitor_id, "messages")
        await _visitor_message(request, ws, me, str(frame.get("text") or ""))
    elif kind == "typing" and live is not None:
        await hub.to_agent(live.agent, {"type": "typing", "chat_id": live.chat_id})
    elif kind == "end" and live is not None:
        await _end(request.app, live, actor=f"visitor:{me.visitor_id}")
        me.current()
    elif kind == "rate":
        await _rate(request, ws, me, frame)
    elif kind == "offline_message":
        hub.limiter.hit(me.visitor_id, "messages")
        await _offline(request, ws, me, frame)
    else:
        await ws.send_json(
            {"type": "error", "error": "chat-frame-invalid", "message": f"unknown type {kind!r}"}
        )


async def _visitor_message(
    request: web.Request, ws: web.WebSocketResponse, me: _Visitor, text: str
) -> None:
    hub = request.app[HUB]
    sessions = request.app[DATABASE].sessions
    live = me.current()
    if live is None:
        helpdesk = request.app[HELPDESK]
        async with sessions.begin() as session:
            records = ChatRecords(session, helpdesk.clock)
            chat, ticket, message = await records.start(
                me.visitor_id, text, name=me.name, email=me.email
            )
            await helpdesk.ticket_created(session, ticket)
            await helpdesk.message_stored(session, ticket, message)
            ticket_out = await helpdesk._ticket_out(session, ticket)
            await enqueue(session, WebhookEvent.TICKET_CREATED, {"ticket": ticket_out})
            await enqueue(
                session,
                WebhookEvent.MESSAGE_ADDED,
                {"ticket": ticket_out, "message": message_json(message)},
            )
        live = LiveChat(chat.id, ticket.id, ticket.number, me.visitor_id, me.name or "visitor")
        live.visitors.add(ws)
        hub.chats[chat.id] = live
        me.chat = live
        hub.messages += 1
        await ws.send_json({"type": "message", "from": "visitor", **_public(message_json(message))})
        live.item = ChatWorkItem(
            chat.id,
            ticket.id,
            ticket.number,
            queue=me.topic or CHAT_QUEUE,
            language=me.language,
            visitor_name=live.visitor_name,
        )
        live.routing = hub.spawn(_route(request.app, live, live.item), f"chat-{chat.id}-routing")
        return
    _join(live, ws)
    await _relay(request.app, live, text, from_visitor=True, author=me.name or "visitor")


async def _route(app: web.Application, live: LiveChat, item: ChatWorkItem) -> None:
    """Hand the chat to the router; assign it to the agent who takes it, or go offline."""
    hub = app[HUB]

    async def waiting(where: ChatWaiting) -> None:
        frame: dict[str, Any] = {
            "type": "waiting",
            "chat_id": live.chat_id,
            "position": where.position,
            "expected_wait": None if where.expected_wait is None else round(where.expected_wait),
        }
        await hub.to_visitors(live, frame)

    try:
        agent = await app[ROUTING].offer(item, waiting)
    except (ConsoleError, TicketsError) as err:  # the router's own errors
        log.error("chat %d could not be routed: %s", live.chat_id, err)
        agent = None
    except Exception:
        log.exception("chat %d could not be routed", live.chat_id)
        agent = None
    live.routing = None
    if live.ended:
        return
    if agent is None:
        await _end(app, live, actor="system:chat", notify=False)
        await hub.to_visitors(
            live,
            {
                "type": "offline",
                "chat_id": live.chat_id,
                "message": "Nobody can answer now: leave a message and we will email you.",
            },
        )
        return
    await _assign(app, live, agent)


async def _relay(
    app: web.Application, live: LiveChat, text: str, *, from_visitor: bool, author: str
) -> None:
    """Store one message of a live chat (with its help-desk follow-ups and its webhook) and
    show it to both sides."""
    hub = app[HUB]
    helpdesk = app[HELPDESK]
    async with app[DATABASE].sessions.begin() as session:
        records = ChatRecords(session, helpdesk.clock)
        chat = await records.get(live.chat_id)
        ticket = await records.tickets.get(chat.ticket_id, for_update=True)
        previous = ticket.status  # a visitor's message reopens a pending or solved ticket
        message = await records.add_message(chat, text, from_visitor=from_visitor, author=author)
        await helpdesk.status_changed(session, ticket, previous)
        await helpdesk.message_stored(session, ticket, message)
        await enqueue(
            session,
            WebhookEvent.MESSAGE_ADDED,
            {"ticket_id": live.ticket_id, "message": message_json(message)},
        )
    hub.messages += 1
    frame = {
        "type": "message",
        "from": "visitor" if from_visitor else "agent",
        "chat_id": live.chat_id,
        **_public(message_json(message)),
    }
    await hub.to_visitors(live, frame)
    await hub.to_agent(live.agent, frame)


def _public(message: dict[str, Any]) -> dict[str, Any]:
    return {k: message[k] for k in ("id", "author", "body", "created_at")}


async def _assign(app: web.Application, live: LiveChat, agent: str) -> None:
    hub = app[HUB]
    helpdesk = app[HELPDESK]
    async with app[DATABASE].sessions.begin() as session:
        records = ChatRecords(session, helpdesk.clock)
        chat = await records.get(live.chat_id)
        previous = (await records.tickets.get(chat.ticket_id, for_update=True)).status
        ticket = await records.assign(chat, agent)  # a new ticket becomes open
        await helpdesk.status_changed(session, ticket, previous)
    live.agent = agent
    await _offer_to_agent(app, live)
    await hub.to_visitors(live, {"type": "assigned", "chat_id": live.chat_id, "agent": agent})


async def _offer_to_agent(app: web.Application, live: LiveChat) -> None:
    """``chat.assigned`` with the transcript so far, to the chat's agent."""
    async with app[DATABASE].sessions() as session:
        repo = TicketRepository(session)
        ticket = await repo.get(live.ticket_id)
        transcript = [
            _public(message_json(m))
            | {"from": "visitor" if m.author_kind == "customer" else "agent"}
            for m in await repo.messages(ticket, include_internal=False)
        ]
    await app[HUB].to_agent(
        live.agent,
        {
            "type": "chat.assigned",
            "chat_id": live.chat_id,
            "ticket_id": live.ticket_id,
            "ticket_number": live.number,
            "visitor_name": live.visitor_name,
            "transcript": transcript,
        },
    )


async def _end(app: web.Application, live: LiveChat, *, actor: str, notify: bool = True) -> None:
    """End the chat once: stop routing it, record the end, tell both sides and the router."""
    if live.ended:
        return
    live.ended = True
    hub = app[HUB]
    if live.gone is not None:
        live.gone.cancel()
        live.gone = None
    routing = live.routing
    if routing is not None and routing is not asyncio.current_task():
        routing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await routing
    try:
        async with app[DATABASE].sessions.begin() as session:
            records = ChatRecords(session, app[HELPDESK].clock)
            await records.end(await records.get(live.chat_id), actor=actor)  # ticket status kept
    finally:
        hub.chats.pop(live.chat_id, None)
        if live.item is not None:
            try:
                await app[ROUTING].ended(live.item)
            except (ConsoleError, TicketsError) as err:
                log.error("chat %d: the router could not end it: %s", live.chat_id, err)
            except Exception:
                log.exception("chat %d: the router could not end it", live.chat_id)
    if notify:
        frame = {"type": "ended", "chat_id": live.chat_id}
        await hub.to_visitors(live, frame)
        await hub.to_agent(live.agent, frame)


async def _rate(
    request: web.Request, ws: web.WebSocketResponse, me: _Visitor, frame: dict[str, Any]
) -> None:
    if me.last_chat_id is None:
        await ws.send_json(
            {"type": "error", "error": "chat-rating-invalid", "message": "no ended chat to rate"}
        )
        return
    async with request.app[DATABASE].sessions.begin() as session:
        records = ChatRecords(session, request.app[HELPDESK].clock)
        chat = await records.get(me.last_chat_id)
        if chat.visitor_id != me.visitor_id:
            raise ConsoleError("not your chat")
        await records.rate(chat, frame.get("score"), str(frame.get("comment") or ""))  # type: ignore[arg-type]
    await ws.send_json({"type": "rated", "chat_id": me.last_chat_id})


async def _offline(
    request: web.Request, ws: web.WebSocketResponse, me: _Visitor, frame: dict[str, Any]
) -> None:
    email = str(frame.get("email") or me.email)
    name = str(frame.get("name") or me.name)
    text = str(frame.get("text") or "")
    helpdesk = request.app[HELPDESK]
    async with request.app[DATABASE].sessions.begin() as session:
        records = ChatRecords(session, helpdesk.clock)
        ticket, message = await records.offline_message(name=name, email=email, text=text)
        await helpdesk.ticket_created(session, ticket)
        await helpdesk.message_stored(session, ticket, message)
        if me.last_chat_id is not None:
            chat = await records.get(me.last_chat_id)
            if chat.visitor_id == me.visitor_id:
                repo = TicketRepository(session)
                await repo.link(
                    ticket,
                    await repo.get(chat.ticket_id),
                    actor="system:chat-offline",
                    kind=LinkKind.RELATED,
                )
        ticket_out = await request.app[HELPDESK]._ticket_out(session, ticket)
        await enqueue(session, WebhookEvent.TICKET_CREATED, {"ticket": ticket_out})
    mailer = request.app.get(MAILER)
    if mailer is not None:
        try:
            await mailer.acknowledge(
                ticket_id=ticket.id, number=ticket.number, to=email, name=name, text=text
            )
        except TicketsError as err:  # the ticket is stored; the acknowledgement can be resent
            log.warning("offline acknowledgement to %s failed: %s", mask_email(email), err)
    await ws.send_json({"type": "offline_stored", "ticket_number": ticket.number})


# -- agent side ------------------------------------------------------------------------------


async def agent_ws(request: web.Request) -> web.StreamResponse:
    """An agent's console socket: chats offered to them, their messages and typing."""
    me = principal(request)
    ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, heartbeat=30)
    await ws.prepare(request)
    hub = request.app[HUB]
    hub.agents.setdefault(me.username, set()).add(ws)
    await ws.send_json({"type": "hello", "agent": me.username})
    for live in [c for c in hub.chats.values() if c.agent == me.username and not c.ended]:
        await _offer_to_agent(request.app, live)  # a reconnecting agent gets their chats back
    try:
        async for frame in _frames(ws):
            if frame is None:
                await ws.send_json(
                    {"type": "error", "error": "chat-frame-invalid", "message": "send JSON objects"}
                )
                continue
            try:
                await _agent_frame(request, me.username, frame)
            except (ConsoleError, TicketsError) as err:
                await ws.send_json(_error(err))
    finally:
        hub.agents.get(me.username, set()).discard(ws)
    return ws


async def _agent_frame(request: web.Request, agent: str, frame: dict[str, Any]) -> None:
    hub = request.app[HUB]
    chat_id = frame.get("chat_id")
    live = hub.chats.get(chat_id) if isinstance(chat_id, int) else None
    if live is None or live.agent != agent:
        raise ConsoleError(f"chat {chat_id!r} is not yours")
    kind = frame.get("type")
    if kind == "typing":
        await hub.to_visitors(live, {"type": "typing", "chat_id": live.chat_id})
    elif kind == "end":
        await _end(request.app, live, actor=f"user:{agent}")
    elif kind == "message":
        text = str(frame.get("text") or "")
        await _relay(request.app, live, text, from_visitor=False, author=agent)
    else:
        raise ConsoleError(f"unknown type {kind!r}")


async def chat_hub_ctx(app: web.Application) -> AsyncIterator[None]:
    """When the app stops: end the chats going on here (their live state dies with this node,
    so the router releases what it holds for them: no agent stays taken, no item waits for a
    visitor who is gone), then close every chat socket."""
    yield
    for live in list(app[HUB].chats.values()):
        try:
            await _end(app, live, actor="system:shutdown")
        except (ConsoleError, TicketsError, SQLAlchemyError, OSError) as err:
            log.warning("chat %d not ended at shutdown: %s", live.chat_id, err)
    await app[HUB].close_all()
