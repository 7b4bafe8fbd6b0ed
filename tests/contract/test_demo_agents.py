"""The demo's bots against the real web app over real sockets: a digital agent signs in, answers
a chat and an assigned email ticket; a chat visitor is served and rates, or leaves an offline
message when nobody is there."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from callcenter.demo_agents import BotStats, ChatVisitor, DigitalAgent
from tests.polling import eventually, eventually_true
from tickets.chat import ChatSession, ChatStatus
from tickets.db import Database
from tickets.models import Channel, Message, Ticket, TicketStatus
from tickets.repository import TicketRepository

from .test_web_app import PASSWORD, Web, add_users, start_web

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Web]:
    app, database = await start_web(tmp_path, run_webhooks=False)
    tokens = await add_users(database)
    async with TestClient(TestServer(app)) as client:
        yield Web(app, client, database, tokens)
    await database.close()


def base(site: Web) -> str:
    return str(site.client.make_url("")).rstrip("/")


async def assigned_email(database: Database, agent: str) -> int:
    async with database.sessions.begin() as session:
        repo = TicketRepository(session)
        ticket = await repo.create(subject="Where is my parcel", channel=Channel.EMAIL, actor="t")
        await repo.assign(ticket, agent, actor="t")
        await repo.transition(ticket, TicketStatus.OPEN, actor="t")
        return ticket.id


async def test_given_a_digital_agent_when_a_visitor_chats_and_an_email_is_assigned_then_both_are_answered(  # noqa: E501
    site: Web,
) -> None:
    stats = BotStats()
    ticket_id = await assigned_email(site.database, "agent1")
    agent = DigitalAgent(base(site), "agent1", PASSWORD, stats, think=0.01, email_every=0.1)
    running = asyncio.create_task(agent.run())
    try:
        await eventually_true(lambda: "agent1" in stats.agents_online, 15, "agent1 signed in")
        visitor = ChatVisitor(base(site), stats, name="Nina", email="nina@example.org")
        await visitor.run()
        assert (stats.visitors_served, stats.chats_answered, stats.errors) == (1, 1, 0)

        async def solved() -> bool:
            async with site.database.sessions() as session:
                ticket = await TicketRepository(session).get(ticket_id)
                return ticket.status == TicketStatus.SOLVED

        await eventually(solved, 15, "the assigned email ticket replied to and solved")
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    async with site.database.sessions() as session:
        chat = (await session.execute(select(ChatSession))).scalar_one()
        replies = list(
            (
                await session.execute(
                    select(Message.author).where(
                        Message.ticket_id == ticket_id, Message.internal.is_(False)
                    )
                )
            ).scalars()
        )
    assert (chat.status, chat.agent, chat.visitor_name) == (ChatStatus.ENDED, "agent1", "Nina")
    assert chat.rating is not None
    assert replies == ["agent1"]
    assert stats.emails_replied == 1


async def test_given_no_agent_when_a_visitor_chats_then_an_offline_message_is_left(
    site: Web,
) -> None:
    stats = BotStats()
    await ChatVisitor(base(site), stats, name="Otto", email="otto@example.org").run()
    assert (stats.visitors_offline, stats.visitors_served, stats.errors) == (1, 0, 0)
    async with site.database.sessions() as session:
        channels = list((await session.execute(select(Ticket.channel))).scalars())
    assert sorted(channels) == [Channel.CHAT, Channel.EMAIL]  # the chat, then the offline mail


async def test_given_a_wrong_password_when_the_digital_agent_signs_in_then_it_counts_an_error(
    site: Web,
) -> None:
    stats = BotStats()
    agent = DigitalAgent(base(site), "agent1", "not the password", stats)
    running = asyncio.create_task(agent.run())
    try:
        await eventually_true(lambda: stats.errors >= 1, 15, "the refused sign-in counted")
        assert stats.agents_online == set()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
