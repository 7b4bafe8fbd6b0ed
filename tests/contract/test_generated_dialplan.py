"""The generated Asterisk dialplan (asterisk_conf) running on the simulator, over real sockets.

`generate()` writes extensions.conf and its ``#include`` files to a folder; the simulator loads
them from there (includes resolved against the main file), with queues.conf's fallback queue
and its static members. The controllers are our :class:`FastAgiServer` on ephemeral ports
(route ``ivr/main``: answer, read a digit, ``SET VARIABLE CC_IVR_DONE 1``), a port that
refuses, or a raw server that accepts and drops the session.

Covered: inbound -> cc-ivr (Gosub) -> AGI on node 1 -> done; node 1 refusing -> node 2;
all nodes down -> cc-safe-route -> fallback queue -> static member agent; a node dying
mid-session -> next node; a caller hanging up during the IVR -> no retry; a callback through
cc-callback -> ``Dial(PJSIP/<number>@trunk)`` answered by a simulated trunk endpoint.
With the real IVR (``IvrService`` running the shipped ``main`` flow, its prompts built
beforehand by ``callcenter prompts build``): inbound -> IVR menus -> the flow's queue step
(``CC_QUEUE``) -> cc-queue -> ``Queue(support)`` -> the agent answers; and, when no agent
answers within the queue timeout, cc-queue -> the safe route's fallback queue.

Not simulated: ChanSpy (cc-supervisor) and the VoiceMail fallback; the IVR waiting in the
ACD itself (``QueuePort``) is the ACD's contract test, the dialplan only sees an AGI session.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from asterisk_conf import AgentEndpoint, DeploymentConf, generate
from asterisk_sim.apps import use_endpoints
from asterisk_sim.dialplan import expand_includes, parse_dialplan, read_dialplan_text
from asterisk_sim.errors import DialplanError
from asterisk_sim.functions import evaluate
from asterisk_sim.queue_app import parse_queues_conf
from asterisk_sim.scripts import (
    AgentScript,
    CallerScript,
    HangUp,
    Press,
    StayOnLine,
    Step,
    WaitForPrompt,
)
from asterisk_sim.simulator import AsteriskSimulator, SimCall
from callcenter.asterisk_conf_cmd import flow_queues
from callcenter.config import Settings
from callcenter.prompts_cmd import build_prompts
from ivr.adapters.fastagi_server import AgiSession, FastAgiServer
from ivr.adapters.path_sink import InMemoryPathSink
from ivr.adapters.prompt_renderer import PromptRenderer
from ivr.domain.path import IvrEnded, Outcome
from ivr.protocol.agi_commands import Answer, GetData, SetVariable
from ivr.service import FLOWS_DIR, IvrService, IvrSettings, load_flows

pytestmark = pytest.mark.timeout(60)

INBOUND = "+15550001000"
AGENT = "1001"
PHONES = "sim-phones"
TRUNK = "sim-trunk"
TIME_SCALE = 0.05
TUESDAY_10_PARIS = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)  # main.yaml's office is open
MakeSim = Callable[..., Awaitable[AsteriskSimulator]]


@dataclass
class Node:
    """A FastAGI controller node serving ``ivr/main`` with :meth:`flow`."""

    server: FastAgiServer | None = field(default=None, init=False)

    async def flow(self, session: AgiSession) -> None:
        raise NotImplementedError

    async def start(self) -> int:
        self.server = FastAgiServer({"ivr/main": self.flow}, host="127.0.0.1", port=0)
        await self.server.start()
        return self.server.port

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()


@dataclass
class Controller(Node):
    """Runs the ``main`` flow: answer, read a digit, mark the session done; remembers it."""

    sessions: int = 0
    digits: list[str] = field(default_factory=list)

    async def flow(self, session: AgiSession) -> None:
        self.sessions += 1
        await session.send(Answer())
        reply = await session.send(GetData("beep", 5000, 1))
        self.digits.append(reply.digits())
        if not session.hung_up:
            await session.send(SetVariable("CC_IVR_DONE", "1"))


@dataclass
class QueuingController(Node):
    """A flow that ends in a queue step without the ACD: the dialplan hand-off."""

    queue: str = "sales"

    async def flow(self, session: AgiSession) -> None:
        await session.send(Answer())
        for name, value in (("CC_QUEUE", self.queue), ("CC_PRIORITY", "3")):
            await session.send(SetVariable(name, value))
        await session.send(SetVariable("CC_IVR_DONE", "1"))


class DyingController:
    """Accepts a FastAGI session, answers the call, then closes the socket mid-flow."""

    def __init__(self) -> None:
        self.sessions = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\n", b""):
            pass
        writer.write(b"ANSWER\n")
        await writer.drain()
        await asyncio.wait_for(reader.readline(), 5)
        writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def refused_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(
    folder: Path,
    agi_ports: Sequence[int],
    *,
    queues: tuple[str, ...] = (),
    queue_timeout: int = 600,
    fallback_timeout: int = 120,
) -> dict[str, str]:
    conf = DeploymentConf(
        controllers=tuple(("127.0.0.1", port, refused_port()) for port in agi_ports),
        inbound=((INBOUND, "main"),),
        agents=(AgentEndpoint(AGENT, display_name="Ann"),),
        queues=queues,
        queue_timeout=queue_timeout,
        fallback_timeout=fallback_timeout,
    )
    files = generate(conf, {})
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return files


@pytest.fixture
async def make_sim(tmp_path: Path) -> AsyncIterator[MakeSim]:
    sims: list[AsteriskSimulator] = []

    async def make(
        agi_ports: Sequence[int], agent: AgentScript | None = None, **conf: object
    ) -> AsteriskSimulator:
        files = write_config(tmp_path, agi_ports, **conf)  # type: ignore[arg-type]
        sim = AsteriskSimulator(
            read_dialplan_text(tmp_path / "extensions.conf"), time_scale=TIME_SCALE
        )
        sim.pbx.config.queues.update(parse_queues_conf(files["queues.conf"]))
        use_endpoints(sim.pbx, {AGENT: PHONES, "trunk": TRUNK})
        agent = agent or AgentScript(answer_after=0.5, talk_for=2.0)
        sim.add_agent(AGENT, agent, context=PHONES)
        sim.add_agent("_+X.", AgentScript(answer_after=1.0, talk_for=2.0), context=TRUNK)
        await sim.start()
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        await sim.close()


async def inbound_call(sim: AsteriskSimulator, steps: Sequence[Step]) -> SimCall:
    call = await sim.originate_call(INBOUND, "cc-inbound", CallerScript(list(steps)))
    await call.finished(timeout=30)
    return call


def values(sim: AsteriskSimulator, event: str, channel: str | None = None) -> list[dict[str, str]]:
    found = [dict(h) for h in sim.events if dict(h).get("Event") == event]
    return [v for v in found if channel is None or v.get("Channel") == channel]


def varsets(sim: AsteriskSimulator, call: SimCall, name: str) -> list[str]:
    assert call.two is not None
    return [v["Value"] for v in values(sim, "VarSet", call.two.name) if v.get("Variable") == name]


ANSWER_MENU: list[Step] = [WaitForPrompt(), Press("1"), StayOnLine()]


# -- the generated contexts on the simulator ------------------------------------------------


async def test_given_node_1_up_when_inbound_call_then_ivr_flow_runs_there_and_returns_done(
    make_sim: MakeSim,
) -> None:
    node1, node2 = Controller(), Controller()
    ports = [await node1.start(), await node2.start()]
    try:
        sim = await make_sim(ports)
        call = await inbound_call(sim, ANSWER_MENU)
    finally:
        await node1.close()
        await node2.close()
    assert (node1.sessions, node2.sessions) == (1, 0)
    assert node1.digits == ["1"]
    assert call.variable("GOSUB_RETVAL") == "done"
    assert call.variable("CC_IVR_DONE") == "1"
    assert varsets(sim, call, "AGISTATUS") == ["SUCCESS"]
    assert "ARG1" not in (call.two.variables if call.two else {})  # the Gosub frame restored


async def test_given_node_1_refuses_when_inbound_call_then_node_2_runs_the_flow(
    make_sim: MakeSim,
) -> None:
    node2 = Controller()
    ports = [refused_port(), await node2.start()]
    try:
        sim = await make_sim(ports)
        call = await inbound_call(sim, ANSWER_MENU)
    finally:
        await node2.close()
    assert node2.sessions == 1
    assert node2.digits == ["1"]
    assert varsets(sim, call, "AGISTATUS") == ["FAILURE", "SUCCESS"]
    assert call.variable("GOSUB_RETVAL") == "done"


async def test_given_all_nodes_down_when_inbound_call_then_fallback_queue_rings_static_agent(
    make_sim: MakeSim,
) -> None:
    sim = await make_sim([refused_port(), refused_port()])
    call = await inbound_call(sim, [StayOnLine()])
    assert call.two is not None
    assert varsets(sim, call, "AGISTATUS") == ["FAILURE", "FAILURE"]
    assert call.variable("GOSUB_RETVAL") == "failed"
    joined = values(sim, "QueueCallerJoin", call.two.name)
    assert [v["Queue"] for v in joined] == ["cc-emergency"]
    called = values(sim, "AgentCalled", call.two.name)
    assert [v["Interface"] for v in called] == [f"PJSIP/{AGENT}"]
    connect = values(sim, "AgentConnect", call.two.name)
    assert len(connect) == 1
    agent_leg = connect[0]["DestChannel"]
    assert agent_leg.startswith(f"Local/{AGENT}@{PHONES}-")
    entered = {v["Channel"] for v in values(sim, "BridgeEnter")}
    assert {agent_leg, call.two.name} <= entered
    complete = values(sim, "AgentComplete", call.two.name)
    assert [v["Reason"] for v in complete] == ["agent"]


async def test_given_node_1_dies_mid_session_when_inbound_call_then_node_2_runs_the_flow(
    make_sim: MakeSim,
) -> None:
    dying, node2 = DyingController(), Controller()
    ports = [await dying.start(), await node2.start()]
    try:
        sim = await make_sim(ports)
        call = await inbound_call(sim, ANSWER_MENU)
    finally:
        await dying.close()
        await node2.close()
    assert (dying.sessions, node2.sessions) == (1, 1)
    # Asterisk reports a dropped session as SUCCESS: only CC_IVR_DONE tells them apart.
    assert varsets(sim, call, "AGISTATUS") == ["SUCCESS", "SUCCESS"]
    assert varsets(sim, call, "CC_IVR_DONE") == ["", "", "1"]
    assert call.variable("GOSUB_RETVAL") == "done"


async def test_given_caller_hangs_up_during_ivr_then_call_ends_without_trying_node_2(
    make_sim: MakeSim,
) -> None:
    node1, node2 = Controller(), Controller()
    ports = [await node1.start(), await node2.start()]
    try:
        sim = await make_sim(ports)
        call = await inbound_call(sim, [WaitForPrompt(), HangUp()])
    finally:
        await node1.close()
        await node2.close()
    assert (node1.sessions, node2.sessions) == (1, 0)
    assert varsets(sim, call, "AGISTATUS") == ["HANGUP"]
    assert call.variable("GOSUB_RETVAL") is None
    assert not values(sim, "QueueCallerJoin")


async def test_given_callback_originated_then_cc_callback_dials_the_number_on_the_trunk(
    make_sim: MakeSim,
) -> None:
    sim = await make_sim([refused_port()])
    number = "+15557654321"
    call = await sim.originate_call(number, "cc-callback", CallerScript([StayOnLine()]))
    await call.finished(timeout=30)
    assert call.two is not None
    dials = [
        v["AppData"]
        for v in values(sim, "Newexten", call.two.name)
        if v.get("Application") == "Dial"
    ]
    assert dials == [f"PJSIP/{number}@trunk,45"]
    assert call.variable("DIALSTATUS") == "ANSWER"
    trunk_leg = call.variable("DIALEDPEERNAME") or ""
    assert trunk_leg.startswith(f"Local/{number}@{TRUNK}-")
    entered = {v["Channel"] for v in values(sim, "BridgeEnter")}
    assert {trunk_leg, call.two.name} <= entered


async def test_given_a_flow_queue_with_a_priority_then_queue_prio_carries_it_to_the_queue(
    make_sim: MakeSim,
) -> None:
    node = QueuingController("sales")
    try:
        sim = await make_sim([await node.start()], queues=("sales",))
        call = await inbound_call(sim, [StayOnLine()])
    finally:
        await node.close()
    assert call.two is not None
    assert varsets(sim, call, "QUEUE_PRIO") == ["3"]
    assert [v["Queue"] for v in values(sim, "QueueCallerJoin", call.two.name)] == ["sales"]
    assert [v["Queue"] for v in values(sim, "AgentConnect", call.two.name)] == ["sales"]


# -- the real IVR: inbound -> IVR -> queue -> agent ------------------------------------------

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None and not os.environ.get("CI"),
    reason="espeak-ng is not installed (apt-get install espeak-ng; .ci/run installs it)",
)
CHOOSE_SUPPORT: list[Step] = [
    WaitForPrompt("GET DATA"),  # language menu
    Press("1"),  # English
    WaitForPrompt("GET DATA"),  # main menu
    Press("2"),  # support
    StayOnLine(),
]


@dataclass
class RealIvr:
    """The IVR service on a FastAGI server, playing prompts `prompts build` installed."""

    sounds: Path
    sink: InMemoryPathSink = field(default_factory=InMemoryPathSink)
    server: FastAgiServer | None = None
    renderer: PromptRenderer | None = None

    async def start(self) -> int:
        self.renderer = PromptRenderer(self.sounds)
        service = IvrService(
            IvrSettings(prompt_cache_dir=self.sounds),
            path_sink=self.sink,
            renderer=self.renderer,
            clock=lambda: TUESDAY_10_PARIS,
        )
        service.load()
        self.server = FastAgiServer(service.routes(), host="127.0.0.1", port=0)
        await self.server.start()
        return self.server.port

    async def ended(self, call: SimCall) -> IvrEnded:
        event = await self.sink.wait_for(
            lambda e: isinstance(e, IvrEnded) and e.call_id == call.linkedid, timeout=30
        )
        assert isinstance(event, IvrEnded)
        return event

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()


@pytest.fixture(scope="module")
def built_sounds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped flows' prompts, installed once by `callcenter prompts build`."""
    sounds = tmp_path_factory.mktemp("sounds")
    report = io.StringIO()
    assert build_prompts(Settings(), out_dir=sounds, out=report) == 0, report.getvalue()
    return sounds


def shipped_queues() -> tuple[str, ...]:
    flows, problems = load_flows(FLOWS_DIR)
    assert not problems
    return flow_queues(flows)


@needs_espeak
async def test_given_the_real_ivr_when_caller_chooses_support_then_queue_rings_agent_who_answers(
    make_sim: MakeSim, built_sounds: Path
) -> None:
    ivr = RealIvr(built_sounds)
    try:
        sim = await make_sim([await ivr.start()], queues=shipped_queues())
        call = await inbound_call(sim, CHOOSE_SUPPORT)
        ended = await ivr.ended(call)
    finally:
        await ivr.close()
    assert call.two is not None
    assert (ended.outcome, ended.destination) == (Outcome.QUEUED, "support")
    assert call.variable("CC_QUEUE") == "support"
    assert call.variable("GOSUB_RETVAL") == "done"
    assert [v["Queue"] for v in values(sim, "QueueCallerJoin", call.two.name)] == ["support"]
    connect = values(sim, "AgentConnect", call.two.name)
    assert [(v["Queue"], v["Interface"]) for v in connect] == [("support", f"PJSIP/{AGENT}")]
    entered = {v["Channel"] for v in values(sim, "BridgeEnter")}
    assert {connect[0]["DestChannel"], call.two.name} <= entered
    assert [v["Reason"] for v in values(sim, "AgentComplete", call.two.name)] == ["agent"]
    assert ivr.renderer is not None
    assert ivr.renderer.renders == 0  # every prompt the call heard was built beforehand


@needs_espeak
async def test_given_no_agent_answers_the_flow_queue_then_the_call_takes_the_safe_route(
    make_sim: MakeSim, built_sounds: Path
) -> None:
    ivr = RealIvr(built_sounds)
    try:
        sim = await make_sim(
            [await ivr.start()],
            AgentScript(answer_after=None),
            queues=shipped_queues(),
            queue_timeout=30,
            fallback_timeout=20,
        )
        call = await inbound_call(sim, CHOOSE_SUPPORT)
        await ivr.ended(call)
    finally:
        await ivr.close()
    assert call.two is not None
    joined = values(sim, "QueueCallerJoin", call.two.name)
    assert [v["Queue"] for v in joined] == ["support", "cc-emergency"]
    assert varsets(sim, call, "QUEUESTATUS") == ["TIMEOUT", "TIMEOUT"]
    assert not values(sim, "AgentConnect")


# -- the pieces the generated dialplan needs ------------------------------------------------


def test_given_include_without_folder_when_parsed_then_error_names_file_and_line() -> None:
    with pytest.raises(DialplanError, match=r"extensions\.conf:2"):
        parse_dialplan('[a]\n#include "other.conf"\n')


def test_given_include_loop_when_expanded_then_error() -> None:
    files = {"a.conf": '#include "b.conf"\n', "b.conf": '#include "a.conf"\n'}
    with pytest.raises(DialplanError, match="loops"):
        expand_includes(files["a.conf"], files.__getitem__, origin="a.conf")


def test_given_include_when_expanded_then_file_spliced_in_place() -> None:
    files = {"x.conf": "exten => s,1,NoOp(x)\n"}
    plan = parse_dialplan(expand_includes('[ctx]\n#include "x.conf"\n', files.__getitem__))
    step = plan.find("ctx", "s", 1)
    assert step is not None
    assert step.app == "NoOp"


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("FIELDQTY", "NODES,&", "3"),
        ("FIELDQTY", "EMPTY,&", "0"),
        ("CUT", "NODES,&,2", "b:2"),
        ("CUT", "NODES,&,2-", "b:2&c:3"),
        ("CUT", "NODES,&,-2", "a:1&b:2"),
        ("CUT", "NODES,&,1&3", "a:1&c:3"),
        ("CUT", "NODES,&,4", ""),
        ("ISNULL", "", "1"),
        ("LEN", "abc", "3"),
    ],
)
def test_given_string_function_when_evaluated_then_matches_asterisk(
    name: str, args: str, expected: str
) -> None:
    variables = {"NODES": "a:1&b:2&c:3", "EMPTY": ""}
    assert evaluate(name, args, variables.get) == expected
