"""Knowledge base on real SQLite (FTS5) and real PostgreSQL (tsvector): one ranking contract."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tickets.db import Database
from tickets.errors import InvalidArticle, InvalidSearchQuery
from tickets.ivr_adapters import KnowledgeBaseAnswers, TicketStatusDesk
from tickets.kb import KbArticle, KbTerm, KnowledgeBaseArticles, Visibility
from tickets.kb_search import MAX_QUERY_CHARS, Audience, KbSearch, edit_distance, parse_query
from tickets.models import AuthorKind, Channel, Direction
from tickets.repository import TicketRepository
from tickets.ticket_search import search_tickets

from .conftest import FakeClock

ARTICLES = [
    # slug, title, body, language, visibility
    (
        "refund-policy",
        "Refund policy",
        "How refunds work: we pay back within 14 days.",
        "en",
        "public",
    ),
    ("shipping", "Shipping times", "Parcels travel 3 days. A refund is possible.", "en", "public"),
    ("router-reset", "Reset your router", "Hold the button for ten seconds.", "en", "public"),
    (
        "escalation-desk",
        "Refund escalation",
        "Internal: approve refunds over 500.",
        "en",
        "internal",
    ),
    ("remboursement", "Remboursements", "Nous remboursons sous 14 jours.", "fr", "public"),
    ("zwrot", "Zwrot pieniędzy", "Zwrot w ciągu 14 dni.", "pl", "public"),
]


async def _publish_all(db: Database, clock: FakeClock) -> None:
    for slug, title, body, language, visibility in ARTICLES:
        clock.advance(timedelta(minutes=1))
        async with db.sessions.begin() as session:
            kb = KnowledgeBaseArticles(session, clock)
            article = await kb.create(
                slug=slug,
                title=title,
                body=body,
                language=language,
                visibility=Visibility(visibility),
                author="agent:kim",
            )
            await kb.publish(article, author="agent:kim")


async def _slugs(db: Database, query: str, language: str = "en", **kwargs: object) -> list[str]:
    async with db.sessions() as session:
        results = await KbSearch(session).search(query, language=language, **kwargs)  # type: ignore[arg-type]
        return [hit.slug for hit in results.hits]


async def test_given_a_draft_when_searched_then_not_found_until_published(
    db: Database, clock: FakeClock
) -> None:
    async with db.sessions.begin() as session:
        kb = KnowledgeBaseArticles(session, clock)
        article = await kb.create(
            slug="voicemail",
            title="Voicemail PIN",
            body="Dial star ninety-eight.",
            language="en",
            visibility=Visibility.PUBLIC,
            author="agent:kim",
        )
    assert await _slugs(db, "voicemail") == []
    async with db.sessions.begin() as session:
        kb = KnowledgeBaseArticles(session, clock)
        await kb.publish(await kb.get(article.id), author="agent:kim")
        await kb.save_draft(
            await kb.get(article.id), title="Voicemail code", body="Changed", author="agent:kim"
        )
    assert await _slugs(db, "voicemail pin") == ["voicemail"]
    assert await _slugs(db, "voicemail code") == ["voicemail"]  # "code" only in the draft
    async with db.sessions() as session:
        results = await KbSearch(session).search("code", language="en")
        assert results.hits == ()
        versions = await KnowledgeBaseArticles(session).versions(
            await session.get_one(KbArticle, article.id)
        )
        assert [(v.version, v.published_at is not None) for v in versions] == [
            (1, True),
            (2, False),
        ]


async def test_given_title_and_body_matches_when_searched_then_title_match_ranks_first(
    db: Database, clock: FakeClock
) -> None:
    await _publish_all(db, clock)
    # "refund" is in the title of refund-policy and only in the body of shipping
    assert await _slugs(db, "refund") == ["refund-policy", "shipping"]
    assert await _slugs(db, "refunds") == ["refund-policy", "shipping"]  # stemmed on both


async def test_given_a_typo_when_searched_then_the_vocabulary_word_is_used(
    db: Database, clock: FakeClock
) -> None:
    await _publish_all(db, clock)
    async with db.sessions() as session:
        results = await KbSearch(session).search("roueter rset", language="en")
    assert [hit.slug for hit in results.hits] == ["router-reset"]
    assert results.query.corrections == {"roueter": ("router",), "rset": ("reset",)}


async def test_given_internal_article_when_public_searches_then_only_agents_see_it(
    db: Database, clock: FakeClock
) -> None:
    await _publish_all(db, clock)
    assert "escalation-desk" not in await _slugs(db, "refund")
    assert await _slugs(db, "refund escalation", audience=Audience.INTERNAL) == ["escalation-desk"]


async def test_given_languages_when_searched_then_each_uses_its_own_articles_and_stemming(
    db: Database, clock: FakeClock
) -> None:
    await _publish_all(db, clock)
    assert await _slugs(db, "remboursements", language="fr-FR") == ["remboursement"]
    # Polish has no stemmer configured: whole words still match, accents and all
    assert await _slugs(db, "zwrot pieniędzy", language="pl") == ["zwrot"]
    assert await _slugs(db, "refund", language="pl") == []


async def test_given_words_not_all_in_one_article_when_searched_then_partial_matches_follow(
    db: Database, clock: FakeClock
) -> None:
    await _publish_all(db, clock)
    async with db.sessions() as session:
        results = await KbSearch(session).search("router parcels", language="en")
    assert not results.all_terms_matched
    assert sorted(hit.slug for hit in results.hits) == ["router-reset", "shipping"]


@pytest.mark.parametrize(
    "query",
    [
        "",
        "   ",
        "!!! ??? ***",
        '"refund" NEAR(a b) title:* OR -body ^x',
        "refund'; DROP TABLE kb_articles; --",
        "(refund | !refund) & <-> :* \\ '",
        "x" * (MAX_QUERY_CHARS - 1),
    ],
)
async def test_given_hostile_or_empty_query_when_searched_then_only_words_count(
    db: Database, clock: FakeClock, query: str
) -> None:
    await _publish_all(db, clock)
    slugs = await _slugs(db, query)
    expected = ["refund-policy", "shipping"] if "refund" in query else []
    assert sorted(slugs) == sorted(expected)
    async with db.sessions() as session:  # nothing was dropped
        assert await session.get(KbArticle, 1) is not None


async def test_given_a_10kb_query_when_searched_then_refused_with_a_clear_error(
    db: Database,
) -> None:
    async with db.sessions() as session:
        with pytest.raises(InvalidSearchQuery) as caught:
            await KbSearch(session).search("refund " * 1500, language="en")
    assert caught.value.error_id == "search-query-invalid"
    assert str(MAX_QUERY_CHARS) in str(caught.value)


async def test_given_bad_language_when_searched_or_created_then_clear_errors(
    db: Database, clock: FakeClock
) -> None:
    async with db.sessions() as session:
        with pytest.raises(InvalidSearchQuery):
            await KbSearch(session).search("refund", language="'; --")
    async with db.sessions.begin() as session:
        with pytest.raises(InvalidArticle):
            await KnowledgeBaseArticles(session, clock).create(
                slug="x",
                title="T",
                body="",
                language="english!",
                visibility=Visibility.PUBLIC,
                author="a",
            )


async def test_given_archived_article_when_searched_then_gone_and_its_words_leave_the_vocabulary(
    db: Database, clock: FakeClock
) -> None:
    await _publish_all(db, clock)
    async with db.sessions.begin() as session:
        kb = KnowledgeBaseArticles(session, clock)
        article = await kb.by_slug("router-reset")
        assert article is not None
        await kb.archive(article, author="agent:kim")
    assert await _slugs(db, "router") == []
    async with db.sessions() as session:
        assert await session.get(KbTerm, ("en", "router")) is None
        refund = await session.get(KbTerm, ("en", "refund"))
        assert refund is not None
        assert refund.doc_count == 3


async def test_given_open_ticket_when_suggested_then_articles_from_subject_and_messages(
    db: Database, clock: FakeClock
) -> None:
    await _publish_all(db, clock)
    async with db.sessions.begin() as session:
        repository = TicketRepository(session, clock)
        ticket = await repository.create(
            subject="Internet down", channel=Channel.EMAIL, actor="system"
        )
        await repository.add_message(
            ticket,
            channel=Channel.EMAIL,
            direction=Direction.INBOUND,
            author_kind=AuthorKind.CUSTOMER,
            body="My router blinks red, I tried a reset of the router.",
            actor="customer",
        )
    async with db.sessions() as session:
        results = await KbSearch(session).suggest_for_ticket(ticket, language="en")
    assert [hit.slug for hit in results.hits][:1] == ["router-reset"]


async def test_given_ivr_question_when_answered_then_public_article_text_for_speech(
    db: Database, clock: FakeClock
) -> None:
    await _publish_all(db, clock)
    answers = KnowledgeBaseAnswers(db)
    answer = await answers.answer("how do I reset my router", "en")
    assert answer is not None
    assert answer.startswith("Reset your router. Hold the button")
    assert await answers.answer("approve refund escalation", "en") is None  # internal only
    assert await answers.answer("", "en") is None
    assert await answers.answer("refund " * 2000, "en") is None


async def test_given_ticket_numbers_when_ivr_asks_status_then_surviving_ticket_answers(
    db: Database, clock: FakeClock
) -> None:
    async with db.sessions.begin() as session:
        repository = TicketRepository(session, clock)
        first = await repository.create(subject="Broken phone", channel=Channel.PHONE, actor="s")
        second = await repository.create(subject="Phone broken", channel=Channel.EMAIL, actor="s")
        await repository.merge(second, first, actor="agent:ann")
    desk = TicketStatusDesk(db)
    status = await desk.ticket_status(second.number)
    assert status is not None
    assert status["number"] == first.number
    assert status["status"] == "new"
    assert await desk.ticket_status("2026-999999") is None
    assert await desk.ticket_status("not a number") is None


async def test_given_tickets_when_searched_by_words_or_number_then_found_newest_first(
    db: Database, clock: FakeClock
) -> None:
    async with db.sessions.begin() as session:
        repository = TicketRepository(session, clock)
        a = await repository.create(subject="Printer jam tray 2", channel=Channel.EMAIL, actor="s")
        b = await repository.create(subject="Printer offline", channel=Channel.PHONE, actor="s")
    async with db.sessions() as session:
        assert [t.id for t in await search_tickets(session, "printer")] == [b.id, a.id]
        assert [t.id for t in await search_tickets(session, "PRINTER jam")] == [a.id]
        assert [t.id for t in await search_tickets(session, a.number)] == [a.id]
        assert await search_tickets(session, "\"'; DROP TABLE tickets --") == []
        assert await search_tickets(session, "") == []


def test_given_words_when_parsed_then_only_letters_and_digits_deduplicated() -> None:
    assert parse_query('Refund?? "refund" NEAR(x) 2026-01') == ("refund", "near", "x", "2026", "01")
    assert len(parse_query(" ".join(f"w{i}" for i in range(40)))) == 12


def test_given_two_words_when_distance_measured_then_transposition_counts_once() -> None:
    assert edit_distance("rset", "reset", 1) == 1
    assert edit_distance("retuner", "returne", 2) == 2
    assert edit_distance("abcdef", "zzzzzz", 2) == 3  # stopped early at limit + 1
