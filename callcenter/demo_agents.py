"""The demo's digital agents (bots at the web app) and chat visitors (bots at the widget socket).

Both speak to the node only over its real web port, as people's browsers would:

* a :class:`DigitalAgent` signs in (``POST /login``, JSON: the session cookie and its CSRF
  token), opens the console socket ``/agent/ws``, goes ready in the ACD
  (``POST /api/agent/state``; a node without an ACD answers 503 and chats then go to the
  agents at a console) and answers the chats the ACD assigns to it (``chat.assigned``): a
  greeting, an answer to each visitor message, the end after ``exchanges`` answers. Every few
  seconds it lists its open email tickets through the REST API
  (``GET /api/tickets?assignee=<me>&channel=email&status=open``), replies to each
  (``POST /api/tickets/{id}/messages``) and solves it (``PATCH``): the reply is what ends the
  ACD item and frees the agent. When its session breaks it logs out of the ACD
  (``logged_out``, best effort: a dead web app cannot be told) and signs in again;
* a :class:`ChatVisitor` speaks the widget's protocol on ``/chat/ws``: hello with a name, an
  email address and a topic, a first message, waits (``waiting`` frames) for an agent, answers
  once, ends the chat and rates it; when nobody can take the chat it leaves an offline message.

They record what happened in :class:`BotStats` for the demo's report; the passwords they get
are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from agent_console.auth import CSRF_HEADER, SESSION_COOKIE

__all__ = ["BotStats", "ChatVisitor", "DigitalAgent"]

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=15)
GREETING = "Hello {name}, thanks for writing. Let me look into it."
ANSWERS = (
    "I see it here: it is sorted now.",
    "Done: you will get a confirmation by email.",
    "Thanks for waiting, that is fixed.",
)
EMAIL_REPLY = "Hello,\n\nthank you for your message: we have taken care of it.\n\nKind regards"
VISITOR_LINES = (
    ("My parcel has not arrived yet.", "Great, thank you!"),
    ("Can I change the address on my order?", "Perfect, thanks."),
    ("My invoice shows the wrong amount.", "Thank you, bye."),
)


@dataclass
class BotStats:
    """What the bots did (the demo prints it)."""

    chats_answered: int = 0
    chats_ended_by_agent: int = 0
    emails_replied: int = 0
    visitors: int = 0
    visitors_served: int = 0
    visitors_waited: int = 0
    visitors_offline: int = 0
    errors: int = 0
    agents_online: set[str] = field(default_factory=set)


class DigitalAgent:
    """One agent bot (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        stats: BotStats,
        *,
        rng: random.Random | None = None,
        exchanges: int = 1,
        email_every: float = 3.0,
        think: float = 0.5,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password
        self.stats = stats
        self.rng = rng or random.Random()
        self.exchanges = exchanges
        self.email_every = email_every
        self.think = think
        self._headers: dict[str, str] = {}
        self._turns: dict[int, int] = {}

    async def run(self) -> None:
        """Sign in, then serve chats and emails until cancelled; reconnect after an error."""
        while True:
            try:
                async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as http:
                    await self._sign_in(http)
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._chats(http))
                        tg.create_task(self._emails(http))
            except* (aiohttp.ClientError, OSError, TimeoutError, BotError) as group:
                self.stats.errors += 1
                self.stats.agents_online.discard(self.username)
                causes = "; ".join(str(e) or type(e).__name__ for e in group.exceptions)
                log.warning("demo agent %s: %s; signing in again", self.username, causes)
                await self._log_out()
            await asyncio.sleep(2.0)

    async def _sign_in(self, http: aiohttp.ClientSession) -> None:
        body = {"username": self.username, "password": self._password}
        async with http.post(f"{self.base_url}/login", json=body) as response:
            if response.status != 200:
                raise BotError(f"sign-in refused ({response.status})")
            data = await response.json()
            cookie = response.cookies.get(SESSION_COOKIE)
        if cookie is None:
            raise BotError("sign-in set no session cookie")
        # The cookie is Secure by default: sent by hand, as a browser on localhost would.
        self._headers = {
            "Cookie": f"{SESSION_COOKIE}={cookie.value}",
            CSRF_HEADER: str(data["csrf_token"]),
            "Origin": self.base_url,
        }

    async def _chats(self, http: aiohttp.ClientSession) -> None:
        async with http.ws_connect(
            f"{self.base_url}/agent/ws", headers=self._headers, heartbeat=20
        ) as ws:
            await self._set_state(http, "ready")  # at the console: chats can be offered
            self.stats.agents_online.add(self.username)
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                await self._chat_frame(ws, msg.json())
        raise BotError("the console socket closed")

    async def _set_state(self, http: aiohttp.ClientSession, state: str) -> None:
        """The agent's ACD state through the web app (503 ``no-acd``: a node without an ACD)."""
        url = f"{self.base_url}/api/agent/state"
        async with http.post(url, json={"state": state}, headers=self._headers) as response:
            if response.status == 503 and (await response.json()).get("error") == "no-acd":
                return
            if response.status != 200:
                raise BotError(f"ACD state {state} refused ({response.status})")

    async def _log_out(self) -> None:
        """Out of the ACD after a broken session, so no chat waits for a bot that is gone."""
        if not self._headers:
            return
        try:
            async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as http:
                await self._set_state(http, "logged_out")
        except (aiohttp.ClientError, OSError, TimeoutError, BotError) as err:
            log.info("demo agent %s: not logged out of the ACD: %s", self.username, err)

    async def _chat_frame(self, ws: aiohttp.ClientWebSocketResponse, frame: dict[str, Any]) -> None:
        kind, chat_id = frame.get("type"), frame.get("chat_id")
        if kind == "chat.assigned" and isinstance(chat_id, int):
            if chat_id in self._turns:
                return  # sent again after a reconnect
            self._turns[chat_id] = 0
            self.stats.chats_answered += 1
            await asyncio.sleep(self.think)
            name = str(frame.get("visitor_name") or "there")
            await ws.send_json({"type": "typing", "chat_id": chat_id})
            await ws.send_json(
                {"type": "message", "chat_id": chat_id, "text": GREETING.format(name=name)}
            )
        elif kind == "message" and frame.get("from") == "visitor" and chat_id in self._turns:
            assert isinstance(chat_id, int)
            self._turns[chat_id] += 1
            await asyncio.sleep(self.think)
            text = self.rng.choice(ANSWERS)
            await ws.send_json({"type": "message", "chat_id": chat_id, "text": text})
            if self._turns[chat_id] >= self.exchanges:  # answered enough: end the chat
                await asyncio.sleep(self.think)
                await ws.send_json({"type": "end", "chat_id": chat_id})
                self.stats.chats_ended_by_agent += 1
        elif kind == "ended" and isinstance(chat_id, int):
            self._turns.pop(chat_id, None)
        elif kind == "error":
            log.info("demo agent %s: %s", self.username, frame.get("message"))

    async def _emails(self, http: aiohttp.ClientSession) -> None:
        query = {"assignee": self.username, "channel": "email", "status": "open", "limit": "20"}
        while True:
            async with http.get(
                f"{self.base_url}/api/tickets", params=query, headers=self._headers
            ) as response:
                if response.status != 200:
                    raise BotError(f"ticket list refused ({response.status})")
                listing = await response.json()
            for ticket in listing.get("items", []):
                await asyncio.sleep(self.think)
                await self._answer_email(http, int(ticket["id"]))
            await asyncio.sleep(self.email_every)

    async def _answer_email(self, http: aiohttp.ClientSession, ticket_id: int) -> None:
        url = f"{self.base_url}/api/tickets/{ticket_id}"
        reply = {"kind": "reply", "body": EMAIL_REPLY}
        async with http.post(f"{url}/messages", json=reply, headers=self._headers) as response:
            if response.status != 201:
                log.info("demo agent %s: reply to %d refused", self.username, ticket_id)
                return
        self.stats.emails_replied += 1
        async with http.patch(url, json={"status": "solved"}, headers=self._headers) as response:
            if response.status != 200:
                log.info("demo agent %s: ticket %d not solved", self.username, ticket_id)


class ChatVisitor:
    """One visitor's chat through the widget socket (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        stats: BotStats,
        *,
        name: str,
        email: str,
        topic: str = "",
        rng: random.Random | None = None,
        patience: float = 90.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.stats = stats
        self.name = name
        self.email = email
        self.topic = topic
        self.rng = rng or random.Random()
        self.patience = patience

    async def run(self) -> None:
        """One chat from hello to rating (or an offline message); errors are counted."""
        self.stats.visitors += 1
        try:
            async with (
                aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as http,
                http.ws_connect(
                    f"{self.base_url}/chat/ws", headers={"Origin": self.base_url}
                ) as ws,
                asyncio.timeout(self.patience),
            ):
                await self._chat(ws)
        except (aiohttp.ClientError, OSError, TimeoutError, BotError) as err:
            self.stats.errors += 1
            log.info("demo visitor %s: %s", self.name, err or type(err).__name__)

    async def _chat(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        hello = {"type": "hello", "name": self.name, "email": self.email, "topic": self.topic}
        await ws.send_json(hello)
        await _until(ws, "welcome")
        first, thanks = self.rng.choice(VISITOR_LINES)
        await ws.send_json({"type": "message", "text": first})
        waited = False
        while True:
            frame = await _next(ws)
            if frame["type"] == "waiting" and not waited:
                waited = True
                self.stats.visitors_waited += 1
            elif frame["type"] == "offline":
                self.stats.visitors_offline += 1
                offline = {"type": "offline_message", "email": self.email, "text": first}
                await ws.send_json(offline)
                await _until(ws, "offline_stored")
                return
            elif frame["type"] == "assigned":
                break
        await _agent_says(ws)  # the greeting
        await ws.send_json({"type": "typing"})
        await ws.send_json({"type": "message", "text": thanks})
        while (await _next(ws))["type"] != "ended":
            pass  # the agent answers, then ends the chat
        self.stats.visitors_served += 1
        await ws.send_json({"type": "rate", "score": self.rng.choice((3, 4, 5, 5))})
        await _until(ws, "rated")


class BotError(Exception):
    """The web app answered a bot unexpectedly (the bot starts over)."""

    error_id = "demo-bot-error"


async def _next(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive()
    if msg.type != aiohttp.WSMsgType.TEXT:
        raise BotError(f"the chat socket closed ({msg.type.name})")
    frame = msg.json()
    if not isinstance(frame, dict):
        raise BotError("a frame that is not an object")
    if frame.get("type") == "error":
        raise BotError(f"the chat answered an error: {frame.get('error')}")
    return frame


async def _until(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        frame = await _next(ws)
        if frame["type"] == kind:
            return frame


async def _agent_says(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    while True:
        frame = await _until(ws, "message")
        if frame.get("from") == "agent":
            return frame
