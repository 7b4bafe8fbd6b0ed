"""Knowledge-base search: one query parser, spelling correction and ranking contract, two backends.

Theory of operation:

1. **Parse.** A query is free text from a caller's speech, a chat visitor or a search box. It is
   cut into words (letters and digits, lower-cased; see `tickets.kb.words`); every other
   character, FTS5 and `tsquery` syntax included, only separates words, so no input can change
   the query's structure. More than `MAX_QUERY_CHARS` characters is refused with
   `InvalidSearchQuery`; words after the first `MAX_TERMS` are ignored; an empty query has no
   results.
2. **Correct.** A word that no published article of the language uses (`kb_terms`) is replaced
   by the vocabulary words within `allowed_edits(word)` (Damerau-Levenshtein: none up to 3
   letters, 1 up to 7, 2 from 8), keeping the closest ones and, among equals, the most used.
   Candidates share the first letter (the usual spell-checker pruning: first letters are rarely
   mistyped) and are within two letters of the length. The correction is identical on both
   backends because it reads the same table.
3. **Match.** Every word must match (each word may be matched by any of its corrections); if no
   article matches all words, articles matching any word are returned. Matching is the
   backend's own stemming: FTS5's porter tokenizer on SQLite, the article language's text-search
   configuration on PostgreSQL (`simple` for a language without a stemmer).
4. **Rank** (the contract both backends are tested against): a word in the title counts more
   than in the body (FTS5 `bm25` weights 10:1; PostgreSQL `ts_rank` weights A=1.0, B=0.4), so an
   article matching in its title ranks above one matching only in its body; equal ranks go to
   the most recently published article, then the lowest id.

Only published articles are searched, in the asked language, public ones only unless the
audience is internal (agents).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from tickets.errors import InvalidArticle, InvalidSearchQuery
from tickets.kb import (
    ArticleStatus,
    KbArticle,
    KbTerm,
    Visibility,
    normalise_language,
    search_config,
    words,
)
from tickets.models import Message, Ticket

MAX_QUERY_CHARS = 1000
MAX_TERMS = 12
MAX_CORRECTIONS = 3  # vocabulary words tried in place of one unknown word
MAX_LIMIT = 50
EXCERPT_CHARS = 240
SUGGESTION_TERMS = 12  # words of a ticket's subject and messages used to suggest articles


class Audience(StrEnum):
    PUBLIC = "public"  # callers, chat visitors, the self-service page
    INTERNAL = "internal"  # agents: public and internal articles


@dataclass(frozen=True, slots=True)
class ParsedQuery:
    """The words of a query and, per word, what it will match (itself or its corrections)."""

    terms: tuple[str, ...]
    alternatives: tuple[tuple[str, ...], ...] = ()

    @property
    def corrections(self) -> dict[str, tuple[str, ...]]:
        return {t: alt for t, alt in zip(self.terms, self.alternatives, strict=True) if alt != (t,)}


@dataclass(frozen=True, slots=True)
class ArticleHit:
    article_id: int
    slug: str
    title: str
    excerpt: str
    language: str
    visibility: Visibility
    published_at: datetime | None
    rank: float  # higher is better; comparable within one result list only


@dataclass(frozen=True, slots=True)
class SearchResults:
    hits: tuple[ArticleHit, ...]
    query: ParsedQuery
    all_terms_matched: bool  # False: no article had every word, these match some of them


STOP_WORDS: dict[str, frozenset[str]] = {
    "en": frozenset(
        [
            "a",
            "an",
            "and",
            "are",
            "can",
            "do",
            "does",
            "for",
            "from",
            "have",
            "how",
            "i",
            "in",
            "is",
            "it",
            "me",
            "my",
            "of",
            "on",
            "or",
            "please",
            "the",
            "to",
            "what",
            "when",
            "where",
            "which",
            "who",
            "why",
            "will",
            "with",
            "you",
            "your",
        ]
    ),
    "fr": frozenset(
        [
            "au",
            "aux",
            "avec",
            "ce",
            "comment",
            "de",
            "des",
            "du",
            "elle",
            "est",
            "et",
            "il",
            "je",
            "la",
            "le",
            "les",
            "ma",
            "mes",
            "mon",
            "ne",
            "nous",
            "ou",
            "par",
            "pas",
            "pour",
            "quand",
            "que",
            "qui",
            "sur",
            "un",
            "une",
            "vous",
            "votre",
        ]
    ),
    "de": frozenset(
        [
            "das",
            "der",
            "die",
            "ein",
            "eine",
            "ich",
            "ist",
            "mein",
            "meine",
            "mit",
            "nicht",
            "oder",
            "und",
            "von",
            "was",
            "wie",
            "wo",
            "zu",
        ]
    ),
    "es": frozenset(
        [
            "como",
            "de",
            "el",
            "en",
            "es",
            "la",
            "las",
            "los",
            "mi",
            "para",
            "por",
            "que",
            "un",
            "una",
            "y",
        ]
    ),
}


def parse_query(query: str, language: str = "") -> tuple[str, ...]:
    """The words a query searches for (see the module docstring, step 1)."""
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidSearchQuery(
            f"a search query has at most {MAX_QUERY_CHARS} characters, this one {len(query)}"
        )
    unique: dict[str, None] = {}
    for word in words(query):
        unique.setdefault(word, None)
    stop = STOP_WORDS.get(language, frozenset())
    content = [word for word in unique if word not in stop]
    return tuple(content or unique)[:MAX_TERMS]


def allowed_edits(word: str) -> int:
    """How many typing errors a word of this length may carry and still be corrected."""
    return 0 if len(word) <= 3 else 1 if len(word) <= 7 else 2


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance of a and b, or `limit + 1` as soon as it exceeds limit."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            best = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                best = min(best, previous2[j - 2] + 1)
            current[j] = best
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1]


class KbSearch:
    """Searches published articles in the caller's session (read-only)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @property
    def backend(self) -> str:
        return self.session.get_bind().dialect.name

    async def search(
        self,
        query: str,
        *,
        language: str,
        audience: Audience = Audience.PUBLIC,
        limit: int = 10,
    ) -> SearchResults:
        """Articles for a free-text query, best first (see the module docstring)."""
        try:
            lang = normalise_language(language)
        except InvalidArticle as err:
            raise InvalidSearchQuery(str(err)) from err
        return await self._search_terms(parse_query(query, lang), lang, audience, limit)

    async def _search_terms(
        self, terms: tuple[str, ...], lang: str, audience: Audience, limit: int
    ) -> SearchResults:
        limit = max(1, min(limit, MAX_LIMIT))
        if not terms:
            return SearchResults(hits=(), query=ParsedQuery(()), all_terms_matched=True)
        parsed = await self.correct(terms, lang)
        visibilities = (
            [Visibility.PUBLIC.value]
            if audience == Audience.PUBLIC
            else [Visibility.PUBLIC.value, Visibility.INTERNAL.value]
        )
        hits = await self._match(parsed, lang, visibilities, limit, every=True)
        if hits or len(parsed.terms) == 1:
            return SearchResults(hits=hits, query=parsed, all_terms_matched=True)
        hits = await self._match(parsed, lang, visibilities, limit, every=False)
        return SearchResults(hits=hits, query=parsed, all_terms_matched=False)

    async def correct(self, terms: Sequence[str], language: str) -> ParsedQuery:
        """Each word with what it matches: itself if the vocabulary has it, else its corrections."""
        known_query = select(KbTerm.term).where(
            KbTerm.language == language, KbTerm.term.in_(list(terms))
        )
        known = set((await self.session.execute(known_query)).scalars())
        alternatives: list[tuple[str, ...]] = []
        for term in terms:
            if term in known or allowed_edits(term) == 0:
                alternatives.append((term,))
                continue
            alternatives.append(await self._corrections(term, language) or (term,))
        return ParsedQuery(tuple(terms), tuple(alternatives))

    async def _corrections(self, term: str, language: str) -> tuple[str, ...]:
        limit = allowed_edits(term)
        first = term[0]
        query = select(KbTerm.term, KbTerm.doc_count).where(
            KbTerm.language == language,
            KbTerm.term >= first,
            KbTerm.term < chr(ord(first) + 1),
        )
        scored: list[tuple[int, int, str]] = []
        for candidate, doc_count in (await self.session.execute(query)).all():
            if candidate[0] != first or abs(len(candidate) - len(term)) > limit:
                continue  # (a linguistic collation may sort accented letters into the range)
            distance = edit_distance(term, candidate, limit)
            if distance <= limit:
                scored.append((distance, -doc_count, candidate))
        scored.sort()
        if not scored:
            return ()
        best = scored[0][0]
        return tuple(c for d, _, c in scored if d == best)[:MAX_CORRECTIONS]

    async def _match(
        self,
        parsed: ParsedQuery,
        language: str,
        visibilities: list[str],
        limit: int,
        *,
        every: bool,
    ) -> tuple[ArticleHit, ...]:
        params: dict[str, object] = {
            "language": language,
            "status": ArticleStatus.PUBLISHED.value,
            "limit": limit,
        }
        visibility_params = []
        for i, visibility in enumerate(visibilities):
            params[f"v{i}"] = visibility
            visibility_params.append(f":v{i}")
        in_visibility = ", ".join(visibility_params)
        if self.backend == "postgresql":
            joiner = " & " if every else " | "
            params["q"] = joiner.join("(" + " | ".join(alt) + ")" for alt in parsed.alternatives)
            params["config"] = search_config(language)
            statement = text(
                "SELECT a.id, a.slug, a.title, a.body, a.language, a.visibility, a.published_at,"
                " ts_rank(a.search_vector, q.query) AS rank"
                " FROM kb_articles a, to_tsquery(CAST(:config AS regconfig), :q) AS q(query)"
                " WHERE a.search_vector @@ q.query AND a.status = :status"
                f" AND a.language = :language AND a.visibility IN ({in_visibility})"
                " ORDER BY rank DESC, a.published_at DESC, a.id LIMIT :limit"
            )
        else:
            joiner = " AND " if every else " OR "
            params["q"] = joiner.join(
                "(" + " OR ".join(f'"{word}"' for word in alt) + ")" for alt in parsed.alternatives
            )
            statement = text(
                "SELECT a.id, a.slug, a.title, a.body, a.language, a.visibility, a.published_at,"
                " -bm25(kb_fts, 10.0, 1.0) AS rank"
                " FROM kb_fts JOIN kb_articles a ON a.id = kb_fts.rowid"
                " WHERE kb_fts MATCH :q AND a.status = :status"
                f" AND a.language = :language AND a.visibility IN ({in_visibility})"
                " ORDER BY rank DESC, a.published_at DESC, a.id LIMIT :limit"
            )
        rows = (await self.session.execute(statement, params)).all()
        return tuple(_hit(row) for row in rows)

    async def suggest_for_ticket(
        self, ticket: Ticket, *, language: str, limit: int = 5
    ) -> SearchResults:
        """Articles (public and internal) for the ticket an agent has open.

        The words come from the subject and the customer's messages, newest first, the most
        frequent ones first; any article matching some of them is suggested.
        """
        query = (
            select(Message.body)
            .where(Message.ticket_id == ticket.id, Message.internal.is_(False))
            .order_by(Message.created_at.desc(), Message.id.desc())
            .limit(20)
        )
        bodies = list((await self.session.execute(query)).scalars())
        counts: dict[str, int] = {}
        for position, word in enumerate(words(" ".join([ticket.subject, *bodies])[:20_000])):
            if len(word) > 3:
                counts[word] = counts.get(word, 0) + (3 if position < 40 else 1)
        try:
            lang = normalise_language(language)
        except InvalidArticle as err:
            raise InvalidSearchQuery(str(err)) from err
        stop = STOP_WORDS.get(lang, frozenset())
        ranked = sorted((w for w in counts if w not in stop), key=lambda w: (-counts[w], w))
        return await self._search_terms(
            tuple(ranked[:SUGGESTION_TERMS]), lang, Audience.INTERNAL, limit
        )

    async def public_article(self, slug: str) -> KbArticle | None:
        """A published public article by its slug, for the self-service page."""
        query = select(KbArticle).where(
            KbArticle.slug == slug,
            KbArticle.status == ArticleStatus.PUBLISHED,
            KbArticle.visibility == Visibility.PUBLIC,
        )
        return (await self.session.execute(query)).scalar_one_or_none()


def _hit(row: Sequence[Any]) -> ArticleHit:
    id_, slug, title, body, language, visibility, published_at, rank = row
    if isinstance(published_at, str):  # SQLite through text(): ISO text, written as UTC
        published_at = datetime.fromisoformat(published_at).replace(tzinfo=UTC)
    return ArticleHit(
        article_id=int(id_),
        slug=str(slug),
        title=str(title),
        excerpt=_excerpt(str(body)),
        language=str(language),
        visibility=Visibility(visibility),
        published_at=published_at,
        rank=float(rank),
    )


def _excerpt(body: str) -> str:
    flat = " ".join(body.split())
    if len(flat) <= EXCERPT_CHARS:
        return flat
    cut = flat[:EXCERPT_CHARS].rsplit(" ", 1)[0]
    return f"{cut}…"
