"""The IVR's help-desk ports on the records database: knowledge-base answers and ticket status.

`KnowledgeBaseAnswers` implements `ivr.ports.KnowledgeBase` with the same search as the chat
widget and the self-service page (public articles only); `TicketStatusDesk` implements
`ivr.ports.TicketDesk` from the ticket repository. Each call opens its own short transaction.
A question the search refuses (too long) is a question without an answer (None); a database
failure propagates, and the IVR's `LookupRunner` logs it once and takes the flow's failure branch
(its lookup timeout bounds the wait).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from tickets.db import Database
from tickets.errors import InvalidSearchQuery
from tickets.kb_search import Audience, KbSearch
from tickets.models import Ticket
from tickets.repository import TicketRepository

log = logging.getLogger(__name__)

SPOKEN_ANSWER_CHARS = 600  # about 40 s of speech


class KnowledgeBaseAnswers:
    """`ivr.ports.KnowledgeBase`: the best public article's text, shortened for speech."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def answer(self, question: str, language: str) -> str | None:
        async with self.database.sessions() as session:
            search = KbSearch(session)
            try:
                results = await search.search(
                    question, language=language, audience=Audience.PUBLIC, limit=1
                )
            except InvalidSearchQuery as err:
                log.info("knowledge-base question refused: %s", err)
                return None
            if not results.hits or not results.all_terms_matched:
                return None
            article = await search.public_article(results.hits[0].slug)
        if article is None:
            return None
        return spoken(article.title, article.body)


def spoken(title: str, body: str) -> str:
    """Title and the body's first paragraph(s), cut at a sentence end, for text-to-speech."""
    text = " ".join(body.split())
    if len(text) > SPOKEN_ANSWER_CHARS:
        cut = text[:SPOKEN_ANSWER_CHARS]
        end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
        text = cut[: end + 1] if end > 0 else cut.rsplit(" ", 1)[0]
    return f"{title.rstrip('.')}. {text}".strip()


class TicketStatusDesk:
    """`ivr.ports.TicketDesk`: a ticket's number, status and subject; merged ones answer for the
    ticket they were merged into."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def ticket_status(self, number: str) -> Mapping[str, str] | None:
        async with self.database.sessions() as session:
            repository = TicketRepository(session)
            ticket = await repository.by_number(number)
            if ticket is None:
                return None
            return _fields(await repository.surviving(ticket))


def _fields(ticket: Ticket) -> Mapping[str, str]:
    return {
        "number": ticket.number,
        "status": str(ticket.status),
        "subject": ticket.subject,
        "priority": str(ticket.priority),
    }
