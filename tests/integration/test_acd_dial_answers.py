"""The answer reaches the ACD from AMI ``DialEnd`` while the agent's call is still going on.

The Asterisk simulator runs a caller whose dialplan dials the agent (as the AGI's ``EXEC Dial``
does); the PBX monitor consumes the owned AMI link and :class:`DialAnswers` turns ``DialEnd``
ANSWER of the caller channel into ``answered`` on the real ACD service on a private Redis.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from acd.adapters.ami_answers import DialAnswers
from acd.adapters.ami_link import AmiLink
from acd.adapters.redis_calls import CallFacts
from acd.adapters.redis_state import AcdRedisState
from acd.config import parse_acd_config
from acd.pbx_monitor import PbxMonitor
from acd.service import AcdService, WorkRequest
from asterisk_sim.scripts import AgentScript
from asterisk_sim.simulator import AsteriskSimulator
from tests.integration.test_acd_call_wait import start_redis, until_async

pytestmark = pytest.mark.timeout(60)

DIALPLAN = """
[ivr]
exten => x,1,Answer()
 same => n,Wait(5)
 same => n,Dial(Local/1001@agents,20)
 same => n,Hangup()

[other]
exten => y,1,Answer()
 same => n,Dial(Local/1002@agents,20)
 same => n,Hangup()

[agents]
"""


async def test_given_a_queued_call_when_the_agent_answers_then_assigned_before_dial_returns(
    tmp_path: Path,
) -> None:
    server = await start_redis(tmp_path)
    client = aioredis.Redis.from_url(server.url)
    config = parse_acd_config(
        {
            "service": {"site": f"d{uuid.uuid4().hex[:8]}", "ring_timeout": 20},
            "queues": [{"id": "support", "skills": "support"}],
            "agents": [{"id": "1001", "endpoint": "Local/1001@agents", "skills": {"support": 2}}],
        }
    )
    state = AcdRedisState(client, config.service.site)
    service = AcdService(state, CallFacts(client, state), config, poll_interval=0.05)
    answers = DialAnswers(service)
    monitor = PbxMonitor()
    monitor.listeners.append(answers.observe)
    sim = AsteriskSimulator(DIALPLAN, time_scale=0.1)
    sim.add_agent("1001", AgentScript(answer_after=2, talk_for=300), context="agents")
    sim.add_agent("1002", AgentScript(answer_after=0, talk_for=300), context="agents")
    await sim.start()
    link = AmiLink("127.0.0.1", sim.ami_port, "ivr", "ivrsecret")
    tasks = [
        asyncio.create_task(service.run()),
        asyncio.create_task(answers.run()),
        asyncio.create_task(monitor.consume(link)),
    ]
    try:
        async with asyncio.timeout(10):
            await service.started.wait()
        await service.login("1001")

        async def connected() -> bool:
            return monitor.connected

        await until_async(connected, "AMI connected")
        stranger = await sim.originate_call("y", "other")  # a dial no item belongs to
        call = await sim.originate_call("x", "ivr")
        assert call.two is not None
        handle = await service.enqueue(WorkRequest("c1", "support", unique_id=call.two.uniqueid))
        offer = await handle.reserved(timeout=10)
        assert offer is not None
        assert offer.agent_id == "1001"

        async def assigned() -> bool:
            record = await state.item("c1")
            return record is not None and record.state == "assigned"

        await until_async(assigned, "the answer reached the ACD")
        # Dial has not returned yet: it sets ANSWEREDTIME when the bridged call ends
        assert not call.two.variables.get("ANSWEREDTIME")
        assert "ItemAssigned" in [e.kind for e in await state.all_events()]
        assert answers.reported == 1
        assert answers.unknown == 1  # the stranger's answer named no item and changed nothing
        assert stranger.two is not None
        assert await service.answered("c1")  # the AGI session's own late report is a no-op
        await service.hung_up("c1")
        agent = await state.agent("1001")
        assert agent is not None
        assert agent.offer_id is None
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await sim.close()
        await client.aclose()
        await server.stop()
