"""`callcenter demo` end to end: embedded Redis, SQLite, the simulator, IVR flows, ACD, tickets,
emails to the SMTP port and chats through the widget socket routed by the ACD to digital agents."""

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


def acd_routed(db: Path, agents: tuple[str, ...]) -> dict[str, list[tuple[int, int, str]]]:
    """Chat and email tickets a digital agent got from the ACD, each with its customer and the
    identity that links them: (ticket id, customer id, identity value) by channel.

    A chat ticket counts when its chat session names the agent and the customer holds the chat
    visitor's identity; an email ticket when the ACD assigned it (audit actor ``system:acd``)
    and its customer holds the sender's address (the first message's author).
    """
    marks = ",".join("?" * len(agents))
    with sqlite3.connect(db) as connection:
        chats = connection.execute(
            "SELECT t.id, t.customer_id, i.value FROM tickets t"
            " JOIN chat_sessions c ON c.ticket_id = t.id"
            " JOIN customer_identities i ON i.customer_id = t.customer_id"
            f" AND i.kind = 'chat' AND i.value = c.visitor_id"
            f" WHERE t.channel = 'chat' AND t.assignee IN ({marks}) AND c.agent = t.assignee",
            agents,
        ).fetchall()
        emails = connection.execute(
            "SELECT DISTINCT t.id, t.customer_id, i.value FROM tickets t"
            " JOIN audit_events a ON a.ticket_id = t.id AND a.actor = 'system:acd'"
            " AND a.action = 'acd.email_assigned'"
            " JOIN messages m ON m.ticket_id = t.id AND m.author_kind = 'customer'"
            " JOIN customer_identities i ON i.customer_id = t.customer_id"
            " AND i.kind = 'email' AND i.value = m.author"
            f" WHERE t.channel = 'email' AND t.assignee IN ({marks})",
            agents,
        ).fetchall()
    return {"chat": chats, "email": emails}


def threaded_answers(db: Path) -> int:
    """Email tickets on which the customer wrote again after an agent's public reply."""
    with sqlite3.connect(db) as connection:
        row = connection.execute(
            "SELECT COUNT(DISTINCT t.id) FROM tickets t"
            " JOIN messages r ON r.ticket_id = t.id AND r.author_kind = 'agent'"
            " AND r.internal = 0"
            " JOIN messages c ON c.ticket_id = t.id AND c.author_kind = 'customer'"
            " AND c.id > r.id"
            " WHERE t.channel = 'email'"
        ).fetchone()
    return int(row[0])


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
                mailed = stats.by_channel.get("email", 0) >= 1
                served = stats.bots.visitors_served >= 1  # a chat ended and rated
                # ACD assignments of every channel, as the demo counts them from the ACD stream
                assigned = {"call", "chat", "email"} <= set(stats.assigned)
                if stats.calls_ticketed >= 8 and owns and mailed and served and assigned:
                    words, keyed = heard_and_pressed(db)
                    routed = acd_routed(db, stats.digital_agents)
                    mail = stats.mailbox.stats
                    answered = mail.answered >= 1 and threaded_answers(db) >= 1
                    answered = answered and mail.surveys_answered >= 1
                    if words & KOREAN and keyed and all(routed.values()) and answered:
                        break
                await asyncio.sleep(0.5)
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
    # chats from the widget socket and emails to the SMTP port, routed by the ACD by skill
    assert set(stats.digital_agents) == {"3001", "3002", "3003"}
    assert routed["chat"]
    assert routed["email"]
    assert "[demo] ACD assignments by channel:" in out
    assert stats.bots.visitors_served >= 1
    # agents' replies reached the customers' mailbox; a customer's answer joined its ticket
    assert stats.mailbox.stats.replies >= 1
    assert threaded_answers(db) >= 1
    # a solved email ticket's survey link, followed and answered on the web app
    with sqlite3.connect(db) as connection:
        scores = connection.execute(
            "SELECT score FROM survey_responses WHERE source = 'email'"
        ).fetchall()
    assert scores
    assert all(1 <= score <= 5 for (score,) in scores)
    assert "[demo] mail to customers:" in out
