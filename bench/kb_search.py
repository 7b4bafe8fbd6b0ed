"""Benchmark: knowledge-base search p95 over 100k articles, ticket search p95 over 1M tickets.

Run ``python -m bench.kb_search [--articles N] [--tickets N] [--queries N] [--quick]
[--backends sqlite,postgresql]`` (``--quick``: 10k articles, 100k tickets). Each backend gets a
fresh database migrated with the Alembic revisions (SQLite: a temporary file; PostgreSQL: a
uniquely named database on ``$CALLCENTER_BENCH_POSTGRES_URL``, dropped afterwards).

Data: articles of 8-word titles and 120-word bodies drawn (Zipf-like) from a 20k-word synthetic
vocabulary, in English, 80 % public; tickets with 6-word subjects from the same vocabulary,
loaded in bulk (executemany on SQLite, COPY on PostgreSQL) so the indexes are built by the
database as in production. Queries: 2-3 words of mid frequency, one in three with a typo
(one letter changed), through the real `KbSearch.search` (spelling correction included) and
`search_tickets`.

Printed next to each figure, what it compares to:

* **floor** - a primary-key read of one row on the same database (the least any query costs);
* **scan** (tickets) - the same word looked up with ``LIKE '%word%'``, what search costs without
  the full-text index;
* **goal** - p95 under 50 ms for knowledge-base search (an IVR answer or a widget keystroke must
  not wait) and under 100 ms for ticket search.

No assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy import insert, text

from bench.tickets import _database, _percentile
from tickets.db import Database, open_database
from tickets.kb import KbArticle, KbTerm, vocabulary_counts
from tickets.kb_search import Audience, KbSearch
from tickets.migrate import upgrade
from tickets.models import Ticket
from tickets.ticket_search import search_tickets

GOAL_KB_P95_MS = 50.0
GOAL_TICKETS_P95_MS = 100.0
VOCABULARY = 20_000
CHUNK = 20_000
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _vocabulary(rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < VOCABULARY:
        words.add("".join(rng.choice(LETTERS) for _ in range(rng.randint(4, 10))))
    return sorted(words)


def _pick(rng: random.Random, vocabulary: list[str], count: int) -> list[str]:
    # Zipf-like: low ranks far more often
    n = len(vocabulary)
    return [vocabulary[min(int(rng.paretovariate(1.1)) - 1, n - 1)] for _ in range(count)]


def _typo(rng: random.Random, word: str) -> str:
    i = rng.randrange(1, len(word))  # keep the first letter, like the corrector assumes
    return word[:i] + rng.choice(LETTERS.replace(word[i], "")) + word[i + 1 :]


async def _load_articles(
    db: Database, rng: random.Random, vocabulary: list[str], count: int
) -> None:
    now = datetime.now(UTC)
    texts: list[str] = []
    async with db.engine.begin() as connection:
        for start in range(0, count, CHUNK):
            rows = []
            for i in range(start, min(start + CHUNK, count)):
                title = " ".join(_pick(rng, vocabulary, 8)).capitalize()
                body = " ".join(_pick(rng, vocabulary, 120))
                texts.append(f"{title} {body}")
                rows.append(
                    {
                        "slug": f"article-{i}",
                        "language": "en",
                        "visibility": "public" if rng.random() < 0.8 else "internal",
                        "status": "published",
                        "title": title,
                        "body": body,
                        "search_config": "english",
                        "published_version": 1,
                        "published_at": now,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            await connection.execute(insert(KbArticle), rows)
        counts = vocabulary_counts(texts)
        terms = [{"language": "en", "term": t, "doc_count": n} for t, n in counts.items()]
        for start in range(0, len(terms), CHUNK):
            await connection.execute(insert(KbTerm), terms[start : start + CHUNK])


async def _load_tickets(
    db: Database, rng: random.Random, vocabulary: list[str], count: int
) -> None:
    now = datetime.now(UTC)
    columns = [
        "year", "seq", "number", "subject", "status", "priority", "channel", "queue", "skills",
        "tier", "created_at", "updated_at", "last_activity_at", "sla_paused_seconds",
    ]  # fmt: skip
    channels = ["phone", "email", "chat"]

    def row(i: int) -> tuple[Any, ...]:
        subject = " ".join(_pick(rng, vocabulary, 6))
        return (
            2026, i + 1, f"2026-{i + 1:07d}", subject, "open", "normal", channels[i % 3],
            "support", "[]", 1, now, now, now, 0.0,
        )  # fmt: skip

    async with db.engine.begin() as connection:
        if db.backend == "postgresql":
            raw = (await connection.get_raw_connection()).driver_connection
            assert raw is not None
            for start in range(0, count, CHUNK * 5):
                records = [row(i) for i in range(start, min(start + CHUNK * 5, count))]
                await raw.copy_records_to_table("tickets", records=records, columns=columns)
        else:
            for start in range(0, count, CHUNK * 5):
                rows = [
                    dict(zip(columns, row(i), strict=True))
                    for i in range(start, min(start + CHUNK * 5, count))
                ]
                for r in rows:
                    r["skills"] = []
                await connection.execute(insert(Ticket), rows)
        if db.backend == "postgresql":
            await connection.execute(text("ANALYZE"))


async def _time(calls: list[Callable[[], Awaitable[object]]]) -> list[float]:
    samples = []
    for call in calls:
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _line(label: str, samples: list[float], extra: str = "") -> str:
    p50, p95 = statistics.median(samples), _percentile(samples, 0.95)
    return f"  {label:<26} p50 {p50:8.2f} ms   p95 {p95:8.2f} ms   ({len(samples)} queries){extra}"


async def _run(backend: str, articles: int, tickets: int, queries: int, seed: int) -> None:
    rng = random.Random(seed)
    vocabulary = _vocabulary(rng)
    async with _database(backend) as url:
        await upgrade(url)
        db = open_database(url)
        try:
            started = time.perf_counter()
            await _load_articles(db, rng, vocabulary, articles)
            loaded_a = time.perf_counter() - started
            started = time.perf_counter()
            await _load_tickets(db, rng, vocabulary, tickets)
            loaded_t = time.perf_counter() - started
            print(
                f"{backend}: loaded {articles:,} articles in {loaded_a:.1f} s,"
                f" {tickets:,} tickets in {loaded_t:.1f} s"
            )
            mid = vocabulary[200:4000]
            kb_queries = []
            for i in range(queries):
                words = rng.sample(mid, rng.randint(2, 3))
                if i % 3 == 0:
                    words[0] = _typo(rng, words[0])
                kb_queries.append(" ".join(words))
            async with db.sessions() as session:
                search = KbSearch(session)
                kb = await _time(
                    [
                        partial(search.search, q, language="en", audience=Audience.PUBLIC)
                        for q in kb_queries
                    ]
                )
                floor = await _time(
                    [partial(session.get, KbArticle, 1 + i % articles) for i in range(queries)]
                )
                session.expunge_all()
                ticket_words = [rng.choice(mid) for _ in range(queries)]
                found = await _time(
                    [partial(search_tickets, session, w, limit=20) for w in ticket_words]
                )
                like = text(
                    "SELECT id FROM tickets WHERE subject LIKE :p ORDER BY id DESC LIMIT 20"
                )
                scan = await _time(
                    [partial(session.execute, like, {"p": f"%{w}%"}) for w in ticket_words[:5]]
                )
            print(_line("kb search", kb, f"   goal p95 < {GOAL_KB_P95_MS:.0f} ms"))
            print(_line("floor (primary-key read)", floor))
            print(_line("ticket search", found, f"   goal p95 < {GOAL_TICKETS_P95_MS:.0f} ms"))
            print(_line("scan (LIKE '%word%')", scan))
        finally:
            await db.close()


async def _main(args: argparse.Namespace) -> None:
    articles, tickets = (10_000, 100_000) if args.quick else (args.articles, args.tickets)
    print(
        f"knowledge-base search over {articles:,} articles, ticket search over {tickets:,}"
        f" tickets, {args.queries} queries each"
    )
    for backend in args.backends.split(","):
        await _run(backend.strip(), articles, tickets, args.queries, args.seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="10k articles, 100k tickets")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--seed", type=int, default=7)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
