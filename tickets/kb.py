"""Knowledge-base articles: drafts, published versions, public/internal visibility, languages.

An article is one piece of help in one language (`language`, an IETF primary subtag such as
`en`, `fr`). Every edit is a new row in `kb_article_versions`; publishing a version copies its
title and body onto the article, which is what the search index covers (drafts are never
searched). `visibility` decides the audience: `public` articles serve callers, the chat widget
and the self-service page; `internal` ones only agents.

The full-text index is kept by the database itself, by triggers the Alembic revision `0002`
creates: on SQLite an FTS5 table over `kb_articles(title, body)`; on PostgreSQL a weighted
`tsvector` column with a GIN index, in the text-search configuration of the article's language
(`search_config`, `simple` for a language without a stemmer). The vocabulary for typo
tolerance (`kb_terms`: surface words and how many published articles use them) is kept here, in
the same transaction as the publication, so both backends correct spelling from the same list.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from tickets.errors import ArticleNotFound, InvalidArticle
from tickets.models import Base, EnumText
from tickets.repository import Clock, record_audit, utc_now

# PostgreSQL text-search configurations by language; anything else is searched with `simple`
# (lower-cased words, no stemming), which works for every language.
SEARCH_CONFIGS = {
    "da": "danish",
    "de": "german",
    "en": "english",
    "es": "spanish",
    "fi": "finnish",
    "fr": "french",
    "hu": "hungarian",
    "it": "italian",
    "nl": "dutch",
    "no": "norwegian",
    "pt": "portuguese",
    "ro": "romanian",
    "ru": "russian",
    "sv": "swedish",
    "tr": "turkish",
}
SIMPLE_CONFIG = "simple"
MAX_TERM = 64  # longer "words" are noise (hashes, base64) and are neither indexed nor corrected

_LANGUAGE = re.compile(r"^[a-z]{2,3}$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,199}$")
WORD = re.compile(r"[^\W_]+", re.UNICODE)  # letters and digits; everything else separates


class Visibility(StrEnum):
    PUBLIC = "public"
    INTERNAL = "internal"


class ArticleStatus(StrEnum):
    DRAFT = "draft"  # never published
    PUBLISHED = "published"
    ARCHIVED = "archived"  # withdrawn: kept with its versions, not searched


def _check_in(column: str, enum: type[StrEnum]) -> str:
    values = ", ".join(f"'{member.value}'" for member in enum)
    return f"{column} IN ({values})"


class KbArticle(Base):
    """An article; `title`/`body` are those of the published version (empty until published)."""

    __tablename__ = "kb_articles"
    __table_args__ = (
        Index("ix_kb_articles_language_status", "language", "status", "visibility"),
        CheckConstraint(_check_in("visibility", Visibility), name="visibility"),
        CheckConstraint(_check_in("status", ArticleStatus), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    language: Mapped[str] = mapped_column(String(16))
    visibility: Mapped[Visibility] = mapped_column(EnumText(Visibility))
    status: Mapped[ArticleStatus] = mapped_column(EnumText(ArticleStatus))
    title: Mapped[str] = mapped_column(String(300), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    search_config: Mapped[str] = mapped_column(String(32))
    published_version: Mapped[int | None] = mapped_column(Integer)
    published_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class KbArticleVersion(Base):
    """One saved edit of an article: a draft until published, then the published or an older one."""

    __tablename__ = "kb_article_versions"
    __table_args__ = (UniqueConstraint("article_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("kb_articles.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    published_at: Mapped[datetime | None]


class KbTerm(Base):
    """A word of the published articles of one language, for spelling correction."""

    __tablename__ = "kb_terms"

    language: Mapped[str] = mapped_column(String(16), primary_key=True)
    term: Mapped[str] = mapped_column(String(MAX_TERM), primary_key=True)
    doc_count: Mapped[int] = mapped_column(Integer)


def normalise_language(language: str) -> str:
    """`en-GB`, `EN`, `fr_CA` -> `en`, `en`, `fr`; raise `InvalidArticle` for anything else."""
    primary = language.strip().replace("_", "-").split("-")[0].lower()
    if not _LANGUAGE.match(primary):
        raise InvalidArticle(f"not a language tag: {language[:40]!r}")
    return primary


def search_config(language: str) -> str:
    """The PostgreSQL text-search configuration for a (normalised) language."""
    return SEARCH_CONFIGS.get(language, SIMPLE_CONFIG)


def words(text: str) -> list[str]:
    """The lower-cased words of a text as the vocabulary and the query parser see them."""
    return [w for w in WORD.findall(text.lower()) if len(w) <= MAX_TERM]


class KnowledgeBaseArticles:
    """Writes articles and versions inside the caller's transaction (audited)."""

    def __init__(self, session: AsyncSession, clock: Clock = utc_now) -> None:
        self.session = session
        self.clock = clock

    async def get(self, article_id: int) -> KbArticle:
        article = await self.session.get(KbArticle, article_id)
        if article is None:
            raise ArticleNotFound(f"no article with id {article_id}")
        return article

    async def by_slug(self, slug: str) -> KbArticle | None:
        query = select(KbArticle).where(KbArticle.slug == slug)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def create(
        self,
        *,
        slug: str,
        title: str,
        body: str,
        language: str,
        visibility: Visibility,
        author: str,
    ) -> KbArticle:
        """A new article with its first draft (version 1), not yet searchable."""
        if not _SLUG.match(slug):
            raise InvalidArticle("a slug is 1-200 lower-case letters, digits and dashes")
        language = normalise_language(language)
        now = self.clock()
        article = KbArticle(
            slug=slug,
            language=language,
            visibility=Visibility(visibility),
            status=ArticleStatus.DRAFT,
            title="",
            body="",
            search_config=search_config(language),
            published_version=None,
            published_at=None,
            created_at=now,
            updated_at=now,
        )
        self.session.add(article)
        await self.session.flush()
        await self._add_version(article, 1, title, body, author)
        self._audit(article, author, "kb.created", slug=slug, language=language)
        return article

    async def save_draft(self, article: KbArticle, *, title: str, body: str, author: str) -> int:
        """Store an edit as the next version; the published text is unchanged. Returns it."""
        version = await self._last_version(article) + 1
        await self._add_version(article, version, title, body, author)
        article.updated_at = self.clock()
        self._audit(article, author, "kb.draft_saved", version=version)
        return version

    async def publish(self, article: KbArticle, *, author: str, version: int | None = None) -> None:
        """Make `version` (default: the newest) the searchable text of the article."""
        number = version if version is not None else await self._last_version(article)
        query = select(KbArticleVersion).where(
            KbArticleVersion.article_id == article.id, KbArticleVersion.version == number
        )
        chosen = (await self.session.execute(query)).scalar_one_or_none()
        if chosen is None:
            raise ArticleNotFound(f"article {article.id} has no version {number}")
        old = self._searchable_words(article)
        now = self.clock()
        chosen.published_at = now
        article.title, article.body = chosen.title, chosen.body
        article.status = ArticleStatus.PUBLISHED
        article.published_version = number
        article.published_at = article.updated_at = now
        await self._count_words(article.language, old, self._searchable_words(article))
        self._audit(article, author, "kb.published", version=number)
        await self.session.flush()

    async def archive(self, article: KbArticle, *, author: str) -> None:
        """Withdraw an article from search, keeping it and its versions."""
        old = self._searchable_words(article)
        article.status = ArticleStatus.ARCHIVED
        article.updated_at = self.clock()
        await self._count_words(article.language, old, set())
        self._audit(article, author, "kb.archived")
        await self.session.flush()

    async def set_visibility(
        self, article: KbArticle, visibility: Visibility, *, actor: str
    ) -> None:
        article.visibility = Visibility(visibility)
        article.updated_at = self.clock()
        self._audit(article, actor, "kb.visibility_changed", visibility=str(visibility))
        await self.session.flush()

    async def versions(self, article: KbArticle) -> list[KbArticleVersion]:
        query = select(KbArticleVersion).where(KbArticleVersion.article_id == article.id)
        return list(
            (await self.session.execute(query.order_by(KbArticleVersion.version))).scalars()
        )

    async def _last_version(self, article: KbArticle) -> int:
        query = select(KbArticleVersion.version).where(KbArticleVersion.article_id == article.id)
        found = list((await self.session.execute(query)).scalars())
        return max(found, default=0)

    async def _add_version(
        self, article: KbArticle, version: int, title: str, body: str, author: str
    ) -> None:
        if not title.strip():
            raise InvalidArticle("an article needs a title")
        if len(title) > 300:
            raise InvalidArticle("a title has at most 300 characters")
        self.session.add(
            KbArticleVersion(
                article_id=article.id,
                version=version,
                title=title.strip(),
                body=body,
                author=author,
                created_at=self.clock(),
                published_at=None,
            )
        )
        await self.session.flush()

    @staticmethod
    def _searchable_words(article: KbArticle) -> set[str]:
        if article.status != ArticleStatus.PUBLISHED:
            return set()
        return set(words(f"{article.title} {article.body}"))

    async def _count_words(self, language: str, old: set[str], new: set[str]) -> None:
        await adjust_terms(self.session, language, Counter(new - old), Counter(old - new))

    def _audit(self, article: KbArticle, actor: str, action: str, **data: object) -> None:
        record_audit(
            self.session,
            at=self.clock(),
            actor=actor,
            action=action,
            data={"article": article.id, **data},
        )


async def adjust_terms(
    session: AsyncSession, language: str, added: Counter[str], removed: Counter[str]
) -> None:
    """Add and subtract document counts of vocabulary words; words at zero are dropped."""
    rows = [{"language": language, "term": t, "doc_count": n} for t, n in sorted(added.items())]
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    for start in range(0, len(rows), 1000):  # under both backends' bound-parameter limits
        statement = insert(KbTerm).values(rows[start : start + 1000])
        statement = statement.on_conflict_do_update(
            index_elements=[KbTerm.language, KbTerm.term],
            set_={"doc_count": KbTerm.doc_count + statement.excluded.doc_count},
        )
        await session.execute(statement)
    for term, n in removed.items():
        await session.execute(
            update(KbTerm)
            .where(KbTerm.language == language, KbTerm.term == term)
            .values(doc_count=KbTerm.doc_count - n)
        )
    if removed:
        await session.execute(
            delete(KbTerm).where(
                KbTerm.language == language,
                KbTerm.term.in_(sorted(removed)),
                KbTerm.doc_count <= 0,
            )
        )


def vocabulary_counts(texts: Iterable[str]) -> Counter[str]:
    """Document frequencies of the words of some texts (bulk loads build `kb_terms` with it)."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(set(words(text)))
    return counts
