"""The caller's wait through the Asterisk simulator, our FastAGI server and the ACD on real Redis.

Each test runs the real :class:`~acd.service.AcdService` (engine rebuilt from Redis) behind the
IVR route's queue port; calls are simulated Local channels, agents are simulated endpoints
(``Local/<exten>@agents``) that answer after a delay, never, or are busy.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from acd.adapters.ami_callback import AmiCallbackDialer
from acd.adapters.ami_link import AmiLink
from acd.adapters.redis_calls import CallFacts
from acd.adapters.redis_state import AcdEvent, AcdRedisState
from acd.config import AcdConfig, parse_acd_config
from acd.service import AcdService
from asterisk_sim.scripts import AgentScript, CallerScript, Press, Step, WaitForPrompt
from asterisk_sim.simulator import AsteriskSimulator, SimCall
from ivr.adapters.acd_queue import AcdQueue, CallbackRoute
from ivr.adapters.fastagi_server import AgiHandler, AgiSession, FastAgiServer
from ivr.adapters.ivr_route import IvrRoute, RouteSettings, queue_announcement
from ivr.adapters.lookups import (
    InMemoryCallbacks,
    InMemoryCustomerDirectory,
    InMemoryKnowledgeBase,
    InMemoryTicketDesk,
    LookupRunner,
    WebhookClient,
)
from ivr.adapters.path_sink import InMemoryPathSink
from ivr.adapters.prompt_renderer import PromptRenderer
from ivr.domain.flow_check import check_flow_text

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(
        shutil.which("espeak-ng") is None and not os.environ.get("CI"),
        reason="espeak-ng is not installed (apt-get install espeak-ng; .ci/run installs it)",
    ),
]

TIME_SCALE = 0.1
WAIT = 30.0
CALLER = "+15551230001"
FLOW = """
name: wait
start: queue
steps:
  queue: {type: queue, queue: support, skills: [support], on_failure: bye}
  bye: {type: hangup}
"""


def config(**service: object) -> AcdConfig:
    return parse_acd_config(
        {
            "service": {"site": f"t{uuid.uuid4().hex[:8]}", "missed_cooldown": 0.2, **service},
            "queues": [
                {
                    "id": "support",
                    "skills": "support",
                    "announce_every": 5,
                    "default_handle_time": 120,
                    "wrap_up": 0.5,
                }
            ],
            "agents": [
                {
                    "id": "1001",
                    "endpoint": "Local/1001@agents",
                    "skills": {"support": 3},
                    "languages": ["en"],
                },
                {
                    "id": "1002",
                    "endpoint": "Local/1002@agents",
                    "skills": {"support": 2},
                    "languages": ["en"],
                },
            ],
        }
    )


def dialplan(port: int) -> str:
    return f"""
[ivr]
exten => x,1,Answer()
 same => n,AGI(agi://127.0.0.1:{port}/ivr/wait)
 same => n,Hangup()

[agents]

[trunk]
"""


@dataclass
class RedisServer:
    """A redis-server process on a free port, with an append-only file in ``directory``."""

    directory: Path
    port: int
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            stdout=asyncio.subprocess.DEVNULL,
        )
        client = aioredis.Redis.from_url(self.url)
        try:
            async with asyncio.timeout(10):
                while True:
                    try:
                        await client.ping()
                        return
                    except (OSError, aioredis.ConnectionError):
                        await asyncio.sleep(0.02)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()


REDIS_SERVER = shutil.which("redis-server") or "redis-server"


async def start_redis(directory: Path) -> RedisServer:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = RedisServer(directory, port)
    await server.start()
    return server


async def until(check: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 - bounded polling of a condition
            await asyncio.sleep(0.02)
    assert check(), what


async def until_async(check: Callable[[], Awaitable[bool]], what: str) -> None:
    async with asyncio.timeout(WAIT):
        while not await check():  # noqa: ASYNC110 - bounded polling of Redis
            await asyncio.sleep(0.05)
    assert await check(), what


@dataclass
class Rig:
    service: AcdService
    state: AcdRedisState
    sim: AsteriskSimulator
    renderer: PromptRenderer
    server: FastAgiServer

    async def call(self, steps: Sequence[Step]) -> SimCall:
        return await self.sim.originate_call(
            "x", "ivr", CallerScript(list(steps)), caller_id=("Alice", CALLER)
        )

    def commands(self, call: SimCall) -> list[str]:
        two = call.two
        return [
            v["Command"]
            for v in (dict(e) for e in call.events)
            if v.get("Event") == "AGIExecStart" and two is not None and v.get("Channel") == two.name
        ]

    def heard(self, call: SimCall, text: str) -> bool:
        stem = str(self.renderer.cached_path(text, "en").with_suffix(""))
        return any(stem in c for c in self.commands(call))

    async def events(self) -> list[AcdEvent]:
        return await self.state.all_events()

    async def kinds(self) -> list[str]:
        return [e.kind for e in await self.events()]


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[str]:
    """A Redis server of this test alone (the shared one is flushed by other test runs)."""
    server = await start_redis(tmp_path)
    try:
        yield server.url
    finally:
        await server.stop()


@pytest.fixture
async def rig_factory(
    private_redis: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Callable[..., object]]:
    redis_url = private_redis
    cleanups: list[Callable[[], object]] = []
    client = aioredis.Redis.from_url(redis_url)
    cache = tmp_path_factory.mktemp("prompts")

    async def make(agents: dict[str, AgentScript], **service: object) -> Rig:
        cfg = config(**service)
        state = AcdRedisState(client, cfg.service.site)
        renderer = PromptRenderer(Path(cache))
        live: dict[str, AgiHandler] = {}

        def late(name: str) -> AgiHandler:
            async def handle(session: AgiSession) -> None:
                await live[name](session)

            return handle

        server = FastAgiServer({"ivr/wait": late("ivr/wait"), "acd/callback": late("cb")}, port=0)
        await server.start()
        sim = AsteriskSimulator(dialplan(server.port), time_scale=TIME_SCALE)
        for exten, script in agents.items():
            sim.add_agent(exten, script, context="agents")
        await sim.start()
        link = AmiLink("127.0.0.1", sim.ami_port, "ivr", "ivrsecret")
        link_task = asyncio.create_task(link.run())
        dialer = AmiCallbackDialer(link, f"agi://127.0.0.1:{server.port}")
        svc = AcdService(state, CallFacts(client, state), cfg, dialer=dialer, poll_interval=0.05)
        route = IvrRoute(
            renderer=renderer,
            lookups=LookupRunner(InMemoryTicketDesk(), InMemoryKnowledgeBase(), WebhookClient()),
            path_sink=InMemoryPathSink(),
            callbacks=InMemoryCallbacks(),
            customers=InMemoryCustomerDirectory(),
            queue=AcdQueue(svc),
            settings=RouteSettings(trunk_pattern="Local/{number}@trunk", queue_poll_ms=500),
        )
        flow, problems = check_flow_text(FLOW, "wait.yaml")
        assert flow is not None
        assert not problems
        live["ivr/wait"] = route.handler(lambda: flow)
        live["cb"] = CallbackRoute(svc, trunk_pattern="Local/{number}@trunk")
        svc_task = asyncio.create_task(svc.run())
        await until(svc.started.is_set, "service started")
        for agent_id in cfg.agents:
            await svc.login(agent_id, paused="lunch")

        async def close() -> None:
            svc_task.cancel()
            link_task.cancel()
            await asyncio.gather(svc_task, link_task, return_exceptions=True)
            await sim.close()
            await server.close()

        cleanups.append(close)
        return Rig(svc, state, sim, renderer, server)

    try:
        yield make
    finally:
        for cleanup in cleanups:
            await cleanup()  # type: ignore[misc]
        await client.aclose()


def announcement(position: int, minutes_s: float | None) -> str:
    return queue_announcement(position, minutes_s, "en", "5")


async def test_given_all_agents_paused_when_a_call_is_queued_then_caller_hears_position_and_wait(
    rig_factory: Callable[..., object],
) -> None:
    rig: Rig = await rig_factory({"1001": AgentScript(answer_after=0.5, talk_for=2.0)})  # type: ignore[misc]
    await rig.service.ready("1002")
    await rig.service.pause("1002", "coaching")
    busy = await rig.call([])  # nobody ready: waits with music on hold

    expected = announcement(1, None)
    await until(lambda: rig.heard(busy, expected), "position and (unknown) wait announced")
    assert "SET MUSIC ON default" in rig.commands(busy)

    await rig.service.ready("1001")
    await busy.finished(timeout=WAIT)

    commands = rig.commands(busy)
    assert any(c.startswith("EXEC Dial Local/1001@agents,20") for c in commands)
    kinds = await rig.kinds()
    for fact in ("CallQueued", "ItemOffered", "CallAnswered", "ItemAssigned", "CallCompleted"):
        assert fact in kinds
    assert kinds.index("CallAnswered") < kinds.index("ItemAssigned")
    agent = await rig.state.agent("1001")
    assert agent is not None
    assert agent.offer_id is None
    assert agent.load["call"] == 0


async def test_given_agents_staffed_when_queued_then_the_expected_wait_uses_handle_time(
    rig_factory: Callable[..., object],
) -> None:
    rig: Rig = await rig_factory({})  # type: ignore[misc]
    await rig.service.ready("1001")
    await rig.service.pause("1001", "after-call")  # staffed but paused: not counted
    await rig.service.ready("1002")
    await rig.service.pause("1002", "x")
    call = await rig.call([])
    await until(lambda: rig.heard(call, announcement(1, None)), "unknown wait announced")
    items = [i for i in rig.service._items if i.startswith("call-")]
    assert len(items) == 1
    estimate = rig.service.wait_status(items[0])
    assert estimate is not None
    assert estimate.position == 1
    assert estimate.seconds is None
    rig.sim.pbx.soft_hangup(call.one, event_cause=None, cause=None)  # type: ignore[arg-type]
    await call.finished(timeout=WAIT)
    await until(lambda: not rig.service._items, "abandoned item forgotten")
    kinds = await rig.kinds()
    assert "CallAbandoned" in kinds
    assert "ItemCancelled" in kinds


async def test_given_an_agent_who_never_answers_then_requeued_at_head_missed_and_auto_paused(
    rig_factory: Callable[..., object],
) -> None:
    rig: Rig = await rig_factory(  # type: ignore[misc]
        {"1001": AgentScript(answer_after=None), "1002": AgentScript(answer_after=0.2)},
        pause_after_misses=1,
        ring_timeout=3,
    )
    call = await rig.call([])
    await until(lambda: rig.heard(call, announcement(1, None)), "announced")
    await rig.service.ready("1001")
    await until(
        lambda: any("Local/1001@agents" in c for c in rig.commands(call)), "agent 1001 rung"
    )

    async def paused() -> bool:
        agent = await rig.state.agent("1001")
        return agent is not None and agent.pause_reason == "missed-offers"

    await until_async(paused, "paused")
    events = await rig.events()
    assert any(e.kind == "OfferMissed" and e.fields["agent"] == "1001" for e in events)
    assert any(e.kind == "ItemRequeued" and e.fields["cause"] == "no_answer" for e in events)

    await rig.service.ready("1002")
    await call.finished(timeout=WAIT)
    assert any("Local/1002@agents" in c for c in rig.commands(call))
    assert "CallCompleted" in await rig.kinds()


async def test_given_a_caller_who_hangs_up_while_the_agent_rings_then_cancelled_and_agent_free(
    rig_factory: Callable[..., object],
) -> None:
    rig: Rig = await rig_factory({"1001": AgentScript(answer_after=None)})  # type: ignore[misc]
    call = await rig.call([])
    await until(lambda: rig.heard(call, announcement(1, None)), "announced")
    await rig.service.ready("1001")
    await until(lambda: any("EXEC Dial" in c for c in rig.commands(call)), "agent rung")
    rig.sim.pbx.soft_hangup(call.one, event_cause=None, cause=None)  # type: ignore[arg-type]
    await call.finished(timeout=WAIT)

    async def freed() -> bool:
        agent = await rig.state.agent("1001")
        return agent is not None and agent.offer_id is None and agent.state == "ready"

    await until_async(freed, "freed")
    cancelled = [e for e in await rig.events() if e.kind == "ItemCancelled"]
    assert cancelled
    assert cancelled[0].fields["agent"] == "1001"
    assert (await rig.state.snapshot()).waiting_total == 0


async def test_given_a_caller_who_presses_the_callback_key_then_place_kept_and_agent_rung_first(
    rig_factory: Callable[..., object],
) -> None:
    rig: Rig = await rig_factory(  # type: ignore[misc]
        {"1001": AgentScript(answer_after=0.2, talk_for=1.0)}
    )
    rig.sim.add_agent(CALLER, AgentScript(answer_after=0.2, talk_for=1.0), context="trunk")
    call = await rig.call(
        [WaitForPrompt("STREAM FILE"), Press("5", delay=0.2), WaitForPrompt("GET DATA"), Press("1")]
    )
    await call.finished(timeout=WAIT)
    events = await rig.events()
    queued = next(e for e in events if e.kind == "ItemEnqueued")
    callback = next(
        e for e in events if e.kind == "ItemEnqueued" and e.fields["item"].endswith("-cb")
    )
    assert callback.fields["enq"] == queued.fields["enq"]  # the place is kept
    assert "CallbackRequested" in [e.kind for e in events]

    await rig.service.ready("1001")

    async def completed() -> bool:
        return any(
            e.kind == "ItemCompleted" and e.fields["item"].endswith("-cb")
            for e in await rig.events()
        )

    await until_async(completed, "completed")
    kinds = [e.kind for e in await rig.events()]
    assert kinds.index("ItemOffered", kinds.index("CallbackRequested")) < kinds.index(
        "CallAnswered"
    )
