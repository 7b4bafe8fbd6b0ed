"""`callcenter demo` end to end: embedded Redis, SQLite, the simulator, IVR flows, ACD, tickets."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from callcenter.config import Secret, load_settings
from callcenter.demo import DemoOptions, DemoStats, run_demo

pytestmark = pytest.mark.timeout(150)

KOREAN = {"네", "아니요", "상담원"}


def heard_and_pressed(db: Path) -> tuple[set[str], int]:
    """Words recognised and keypad entries made, over every ticketed call."""
    with sqlite3.connect(db) as connection:
        paths = [
            json.loads(row[0]) for row in connection.execute("SELECT ivr_path FROM call_records")
        ]
    words = {e["text"] for path in paths for e in path if e["event"] == "SpeechHeard"}
    keyed = sum(1 for path in paths for e in path if e["event"] == "DigitsEntered" and e["digits"])
    return words, keyed


async def test_given_the_demo_when_it_runs_then_callers_walk_the_flows_reach_agents_and_get_tickets(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    settings = load_settings(environ={})
    db = tmp_path / "demo.db"
    settings = replace(
        settings,
        agi=replace(settings.agi, port=0),
        audiosocket=replace(settings.audiosocket, port=0),
        web=replace(settings.web, port=0),
        node=replace(settings.node, lease_ttl=2.0),
        database=replace(settings.database, url=Secret(f"sqlite+aiosqlite:///{db}")),
        ivr=replace(settings.ivr, prompt_cache_dir=str(tmp_path / "prompts")),
    )
    stats = DemoStats()
    options = DemoOptions(calls_per_minute=120.0, seed=7, report_every=0.5)
    demo = asyncio.create_task(run_demo(settings, options, stats=stats))
    try:
        async with asyncio.timeout(120):
            while True:
                assert not demo.done(), demo
                owns = stats.monitor.lease_token is not None
                if stats.calls_ticketed >= 8 and stats.acd is not None and owns:
                    words, keyed = heard_and_pressed(db)
                    kinds = {e.kind for e in await stats.acd.state.all_events()}
                    mailed = stats.by_channel.get("email", 0) >= 1
                    if words & KOREAN and keyed and "ItemAssigned" in kinds and mailed:
                        break
                await asyncio.sleep(0.2)
    finally:
        demo.cancel()
        with pytest.raises(asyncio.CancelledError):
            await demo
    out = capsys.readouterr().out
    assert "callcenter demo is running" in out
    assert "[demo] calls placed" in out
    assert stats.tickets >= 1
    assert words & KOREAN  # the support-ko callers' words, recognised by Vosk
    assert stats.monitor.resyncs >= 1
    assert stats.monitor.events_by_name["AGIExecStart"] >= 8
