"""Benchmark: ticket creation from a call event (`record_call`) p50/p99 on SQLite and PostgreSQL.

Run ``python -m bench.tickets [--calls N] [--backends sqlite,postgresql]``. Each backend gets a
fresh database migrated with the Alembic revisions (SQLite: a file in a temporary directory;
PostgreSQL: a uniquely named database on ``$CALLCENTER_BENCH_POSTGRES_URL``, default
``postgresql+asyncpg://postgres@127.0.0.1:5432/test``, dropped afterwards).

The load is N finished calls, one after another, as the ACD hands them over: 70 % from new
numbers (customer and ticket created), 25 % repeat callers (the call joins their open ticket),
5 % anonymous. Each call is the full service path: call record committed, then customer
find-or-create, ticket rule, ticket, call attached, phone note, audit rows, second commit.

Printed next to it, the two things it compares to:

* **floor** - one single-row INSERT of a call record and its commit on the same database, the
  least a durable "call stored" can cost there (the service does two commits and ~10 statements);
* **goal** - p99 under 50 ms, so a node can ticket a burst of 20 calls per second without queueing.

No assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tickets.calls import CallEvent, CallPolicy, CallTickets
from tickets.db import open_database
from tickets.migrate import upgrade
from tickets.models import CallRecord, Direction, Disposition

GOAL_P99_MS = 50.0
ADMIN_URL = os.environ.get(
    "CALLCENTER_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


@asynccontextmanager
async def _database(backend: str) -> AsyncIterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        return
    name = f"tickets_bench_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


def _events(count: int, rng: random.Random, prefix: str) -> list[CallEvent]:
    known: list[str] = []
    events = []
    for i in range(count):
        roll = rng.random()
        if roll < 0.05:
            caller = "anonymous"
        elif roll < 0.30 and known:
            caller = rng.choice(known)
        else:
            caller = f"+1212555{len(known):04d}"
            known.append(caller)
        events.append(
            CallEvent(
                call_id=f"{prefix}.{i}",
                caller=caller,
                started_at=datetime.now(UTC),
                queue="support",
                skills=("en",),
                ivr_path=({"event": "StepEntered", "step": "menu"},),
                queue_wait_s=12.0,
                talk_s=95.0,
                agent="agent:ann",
                disposition=Disposition.ANSWERED,
            )
        )
    return events


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _measure(backend: str, calls: int, seed: int) -> tuple[list[float], list[float]]:
    async with _database(backend) as url:
        await upgrade(url)
        database = open_database(url)
        try:
            service = CallTickets(database.sessions, CallPolicy())
            rng = random.Random(seed)
            for event in _events(20, rng, "warmup"):
                await service.record_call(event)
            service_ms: list[float] = []
            for event in _events(calls, rng, "bench"):
                start = time.perf_counter()
                await service.record_call(event)
                service_ms.append((time.perf_counter() - start) * 1000)
            floor_ms: list[float] = []
            for i in range(calls):
                start = time.perf_counter()
                async with database.sessions.begin() as session:
                    session.add(_bare_record(f"floor.{i}"))
                floor_ms.append((time.perf_counter() - start) * 1000)
        finally:
            await database.close()
    return service_ms, floor_ms


def _bare_record(call_id: str) -> CallRecord:
    now = datetime.now(UTC)
    return CallRecord(
        call_id=call_id,
        direction=Direction.INBOUND,
        caller_raw="+12125550000",
        caller_e164="+12125550000",
        caller_kind="valid",
        started_at=now,
        disposition=Disposition.ANSWERED,
        created_at=now,
    )


async def _main(calls: int, backends: list[str], seed: int) -> None:
    print(f"ticket creation from a call event, {calls} calls per backend (seed {seed})")
    print(f"goal: p99 < {GOAL_P99_MS:.0f} ms; floor: one INSERT + COMMIT of a call record")
    header = f"{'backend':<11} {'p50 ms':>8} {'p99 ms':>8} {'mean':>8} {'calls/s':>8}"
    print(header + f" | {'floor p50':>9} {'floor p99':>9} | {'p50/floor':>9} {'goal':>5}")
    for backend in backends:
        try:
            service_ms, floor_ms = await _measure(backend, calls, seed)
        except OSError as err:
            print(f"{backend:<11} skipped: {err}")
            continue
        p50, p99 = _percentile(service_ms, 0.50), _percentile(service_ms, 0.99)
        f50, f99 = _percentile(floor_ms, 0.50), _percentile(floor_ms, 0.99)
        mean = statistics.fmean(service_ms)
        verdict = "met" if p99 < GOAL_P99_MS else "MISS"
        print(
            f"{backend:<11} {p50:8.2f} {p99:8.2f} {mean:8.2f} {1000 / mean:8.0f}"
            f" | {f50:9.2f} {f99:9.2f} | {p50 / f50:8.1f}x {verdict:>5}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(_main(args.calls, args.backends.split(","), args.seed))


if __name__ == "__main__":
    main()
