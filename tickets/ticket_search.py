"""Ticket search for agents: by human number, or by the words of the subject, newest first.

Uses the same query parser as the knowledge base (`tickets.kb_search.parse_query`: hostile
syntax only separates words, long queries are refused). Matching is on whole words, all of them,
without stemming (ticket subjects mix languages): SQLite's FTS5 table `tickets_fts`, PostgreSQL's
GIN index over `to_tsvector('simple', subject)`; both created by revision `0002`.
"""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from tickets.kb_search import MAX_LIMIT, parse_query
from tickets.models import Ticket
from tickets.repository import parse_number


async def search_tickets(session: AsyncSession, query: str, *, limit: int = 20) -> list[Ticket]:
    """Tickets whose number is `query`, or whose subject has every word of it; newest first."""
    limit = max(1, min(limit, MAX_LIMIT))
    number = parse_number(query)
    if number is not None:
        year, seq = number
        found = select(Ticket).where(Ticket.year == year, Ticket.seq == seq)
        return list((await session.execute(found)).scalars())
    terms = parse_query(query)
    if not terms:
        return []
    if session.get_bind().dialect.name == "postgresql":
        ids = text(
            "SELECT id FROM tickets WHERE to_tsvector('simple'::regconfig, subject)"
            " @@ to_tsquery('simple'::regconfig, :q) ORDER BY id DESC LIMIT :limit"
        )
        q = " & ".join(terms)
    else:
        ids = text(
            "SELECT rowid FROM tickets_fts WHERE tickets_fts MATCH :q"
            " ORDER BY rowid DESC LIMIT :limit"
        )
        q = " AND ".join(f'"{term}"' for term in terms)
    found_ids = list((await session.execute(ids, {"q": q, "limit": limit})).scalars())
    if not found_ids:
        return []
    rows = await session.execute(select(Ticket).where(Ticket.id.in_(found_ids)))
    return sorted(rows.scalars(), key=lambda t: -t.id)
