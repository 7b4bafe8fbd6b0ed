"""Answers to the IVR's ``Lookup`` commands: ticket status, knowledge base, HTTP webhooks.

:class:`LookupRunner` turns one ``Lookup`` into ``LookupResult`` or ``LookupFailed`` within the
step's ``timeout_ms`` (reasons: ``timeout``, ``error``, ``bad-response``), whatever answers it:

* ``ticket_status`` asks a :class:`~ivr.ports.TicketDesk` (param ``number``);
* ``kb`` asks a :class:`~ivr.ports.KnowledgeBase` (param ``question``) and answers
  ``{"answer": text}``;
* ``webhook`` POSTs the params as a JSON object to the step's URL (:class:`WebhookClient`, an
  aiohttp client). The contract for webhook authors: answer ``200`` with a JSON object whose
  scalar fields become ``<result>.<key>`` variables, or ``{"found": false}`` / ``404`` for
  "nothing found". Any other status or a connection failure is ``error``; a body that is not a
  JSON object (or is over 64 KiB) is ``bad-response``; no full answer in time is ``timeout``.

The help desk, the customer directory and the ACD's callback list do not exist yet; the
``InMemory*`` classes here stand in for them in the demo and the tests, and are named so.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import aiohttp

from ivr.domain.call import CallId
from ivr.domain.commands import Lookup
from ivr.domain.events import LookupFailed, LookupResult
from ivr.domain.flow import LookupKind
from ivr.ports import Customer, KnowledgeBase, TicketDesk

__all__ = [
    "MAX_WEBHOOK_BODY",
    "CallbackRequest",
    "InMemoryCallbacks",
    "InMemoryCustomerDirectory",
    "InMemoryKnowledgeBase",
    "InMemoryTicketDesk",
    "LookupRunner",
    "WebhookClient",
]

_log = logging.getLogger(__name__)

MAX_WEBHOOK_BODY = 64 * 1024
CALL_ID_HEADER = "X-Callcenter-Call-Id"

LookupAnswer = LookupResult | LookupFailed


class WebhookClient:
    """POSTs lookup params to webhooks with aiohttp; owns its ClientSession unless given one."""

    def __init__(self, session: aiohttp.ClientSession | None = None) -> None:
        self._session = session
        self._owned = session is None

    async def close(self) -> None:
        if self._owned and self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": "callcenter-ivr"}, raise_for_status=False
            )
            self._owned = True
        return self._session

    async def fetch(
        self, url: str, params: Mapping[str, str], timeout: float, call_id: str = ""
    ) -> LookupAnswer:
        """Ask the webhook at ``url``; the whole exchange must finish within ``timeout`` s."""
        headers = {CALL_ID_HEADER: call_id} if call_id else {}
        try:
            async with asyncio.timeout(timeout):
                async with self._client().post(url, json=dict(params), headers=headers) as reply:
                    if reply.status == 404:
                        return LookupResult(ok=False)
                    if reply.status != 200:
                        _log.warning("webhook %s answered HTTP %d", url, reply.status)
                        return LookupFailed("error")
                    body = await _read_body(reply)
        except TimeoutError:
            _log.warning("webhook %s gave no answer within %.1f s", url, timeout)
            return LookupFailed("timeout")
        except (aiohttp.ClientError, OSError) as err:
            _log.warning("webhook %s failed: %s", url, err)
            return LookupFailed("error")
        return _webhook_answer(url, body)


async def _read_body(reply: aiohttp.ClientResponse) -> bytes:
    """The body, or its first ``MAX_WEBHOOK_BODY + 1`` bytes when it is longer."""
    body = bytearray()
    async for chunk in reply.content.iter_chunked(16384):
        body += chunk
        if len(body) > MAX_WEBHOOK_BODY:
            break
    return bytes(body)


def _webhook_answer(url: str, body: bytes) -> LookupAnswer:
    if len(body) > MAX_WEBHOOK_BODY:
        _log.warning("webhook %s answered more than %d bytes", url, MAX_WEBHOOK_BODY)
        return LookupFailed("bad-response")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        _log.warning("webhook %s answered something that is not JSON", url)
        return LookupFailed("bad-response")
    if not isinstance(data, dict):
        _log.warning("webhook %s answered JSON that is not an object", url)
        return LookupFailed("bad-response")
    if data.get("found") is False:
        return LookupResult(ok=False)
    fields = {
        str(key): _text(value)
        for key, value in data.items()
        if key != "found" and isinstance(value, str | int | float | bool)
    }
    return LookupResult(ok=True, data=fields)


def _text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class LookupRunner:
    """Runs a ``Lookup`` command against the ports, always within its timeout."""

    def __init__(
        self,
        tickets: TicketDesk,
        knowledge: KnowledgeBase,
        webhooks: WebhookClient,
    ) -> None:
        self._tickets = tickets
        self._knowledge = knowledge
        self._webhooks = webhooks

    async def run(self, command: Lookup, language: str, call_id: CallId) -> LookupAnswer:
        params = dict(command.params)
        timeout = max(command.timeout_ms, 1) / 1000
        if command.kind is LookupKind.WEBHOOK:
            return await self._webhooks.fetch(command.url, params, timeout, call_id)
        try:
            async with asyncio.timeout(timeout):
                if command.kind is LookupKind.TICKET_STATUS:
                    ticket = await self._tickets.ticket_status(params.get("number", ""))
                    return LookupResult(ok=ticket is not None, data=dict(ticket or {}))
                answer = await self._knowledge.answer(params.get("question", ""), language)
                return LookupResult(ok=bool(answer), data={"answer": answer} if answer else {})
        except TimeoutError:
            _log.warning("%s lookup gave no answer within %.1f s", command.kind, timeout)
            return LookupFailed("timeout")
        except Exception:
            _log.exception("%s lookup failed", command.kind)
            return LookupFailed("error")


# --- stand-ins for systems that do not exist yet ---------------------------------------------


class InMemoryTicketDesk:
    """In-memory stand-in for the help desk (demo and tests): tickets by number."""

    def __init__(self, tickets: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.tickets = {number: dict(fields) for number, fields in (tickets or {}).items()}

    async def ticket_status(self, number: str) -> Mapping[str, str] | None:
        fields = self.tickets.get(number)
        return None if fields is None else {"number": number, **fields}


class InMemoryKnowledgeBase:
    """In-memory stand-in for the knowledge base: the first entry whose keyword is asked about."""

    def __init__(self, entries: Mapping[str, str] | None = None) -> None:
        self.entries = dict(entries or {})

    async def answer(self, question: str, language: str) -> str | None:
        words = set(question.lower().split())
        for keyword, answer in self.entries.items():
            if set(keyword.lower().split()) <= words:
                return answer
        return None


class InMemoryCustomerDirectory:
    """In-memory stand-in for the customer directory: known and VIP caller numbers."""

    def __init__(self, known: Iterable[str] = (), vip: Iterable[str] = ()) -> None:
        self.vip = set(vip)
        self.known = set(known) | self.vip

    async def customer(self, caller: str) -> Customer:
        return Customer(known=caller in self.known, vip=caller in self.vip)


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    call_id: CallId
    number: str
    language: str


class InMemoryCallbacks:
    """In-memory stand-in for the ACD's callback list (the ACD will keep the queue position)."""

    def __init__(self) -> None:
        self.requests: list[CallbackRequest] = []

    async def request_callback(self, call_id: CallId, number: str, language: str) -> None:
        self.requests.append(CallbackRequest(call_id, number, language))
