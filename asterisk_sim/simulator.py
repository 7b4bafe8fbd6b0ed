"""The Asterisk simulator facade: dialplan + PBX + AMI server + scripted callers and agents.

``callcenter demo`` and the tests start one of these instead of a real Asterisk 22::

    sim = AsteriskSimulator(Path("extensions.conf"), time_scale=0.1)
    await sim.start()                      # AMI on sim.ami_port
    sim.add_agent("1001", AgentScript(answer_after=1.0, talk_for=5.0), context="agents")
    call = await sim.originate_call("main", "trace-ivr", CallerScript([WaitForPrompt(),
                                                                       Press("1")]))
    await call.finished()
    await sim.close()
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asterisk_sim.agi_client import app_agi
from asterisk_sim.ami_server import AmiServer
from asterisk_sim.apps import BUILTIN_APPS
from asterisk_sim.bus import EventBus
from asterisk_sim.channels import Channel
from asterisk_sim.clock import SimClock
from asterisk_sim.dial import app_dial
from asterisk_sim.dialplan import Dialplan, parse_dialplan
from asterisk_sim.errors import SimError
from asterisk_sim.originate import OriginateOutcome, OriginateRequest, originate
from asterisk_sim.pbx import Pbx, PbxConfig
from asterisk_sim.prompts import PromptLibrary
from asterisk_sim.scripts import AgentScript, CallerRun, CallerScript

Headers = list[tuple[str, str]]


def build_pbx(
    dialplan: Dialplan,
    *,
    clock: SimClock | None = None,
    prompts: PromptLibrary | None = None,
    config: PbxConfig | None = None,
) -> Pbx:
    """A PBX with every simulated application registered."""
    pbx = Pbx(dialplan, clock=clock or SimClock(), bus=EventBus(), prompts=prompts, config=config)
    pbx.apps.update(BUILTIN_APPS)
    pbx.apps["dial"] = app_dial
    pbx.apps["agi"] = app_agi
    return pbx


@dataclass
class SimCall:
    """One originated call: its two Local halves, the caller's run and its events."""

    one: Channel | None = None
    two: Channel | None = None
    caller: CallerRun | None = None
    outcome: asyncio.Future[OriginateOutcome] | None = None
    events: list[Headers] = field(default_factory=list)
    _done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def dtmf_sent(self) -> list[str]:
        """Digits the scripted caller pressed."""
        return list(self.caller.dtmf_sent) if self.caller else []

    @property
    def linkedid(self) -> str | None:
        return self.one.linkedid if self.one else None

    def variable(self, name: str) -> str | None:
        """A variable of the IVR half (``;2``) as it is now (or was when it hung up)."""
        return self.two.variables.get(name) if self.two else None

    async def answered(self) -> OriginateOutcome:
        """Wait until the originate succeeded or failed."""
        if self.outcome is None:
            raise SimError("call not started")
        return await self.outcome

    async def finished(self, timeout: float | None = None) -> None:
        """Wait until every channel of the call has hung up."""
        await asyncio.wait_for(self._done.wait(), timeout)


class AsteriskSimulator:
    """Everything `callcenter demo` needs from Asterisk, in-process."""

    def __init__(
        self,
        dialplan: str | Path,
        *,
        ami_user: str = "ivr",
        ami_secret: str = "ivrsecret",
        time_scale: float = 1.0,
        agi_override: tuple[str, int] | None = None,
        audiosocket_override: tuple[str, int] | None = None,
        prompts: PromptLibrary | None = None,
        host: str = "127.0.0.1",
        ami_port: int = 0,
        auth_fail_delay: float = 1.0,
    ) -> None:
        if time_scale <= 0:
            raise SimError("time_scale must be positive")
        if isinstance(dialplan, Path) or "\n" not in dialplan:
            text = Path(dialplan).read_text(encoding="utf-8")
        else:
            text = dialplan
        config = PbxConfig(
            agi_overrides={"*": agi_override} if agi_override else {},
            audiosocket_override=audiosocket_override,
        )
        self.pbx = build_pbx(
            parse_dialplan(text), clock=SimClock(time_scale), prompts=prompts, config=config
        )
        self.ami = AmiServer(
            self.pbx,
            host=host,
            port=ami_port,
            users={ami_user: ami_secret},
            auth_fail_delay=auth_fail_delay,
        )
        self.events: list[Headers] = []
        self._calls: list[SimCall] = []
        self.pbx.bus.subscribe(self._record)

    def _record(self, headers: Headers) -> None:
        self.events.append(headers)
        values = dict(headers)
        linkedid = values.get("Linkedid")
        for call in self._calls:
            if linkedid is not None and call.linkedid == linkedid:
                call.events.append(headers)
            if values.get("Event") == "Hangup" and not self._legs_alive(call):
                call._done.set()

    def _legs_alive(self, call: SimCall) -> bool:
        halves = [c for c in (call.one, call.two) if c is not None]
        if any(not c.gone for c in halves):
            return True
        return any(c.linkedid == call.linkedid and not c.gone for c in self.pbx.channels.all())

    @property
    def ami_port(self) -> int:
        return self.ami.port

    async def start(self) -> None:
        await self.ami.start()

    async def close(self) -> None:
        await self.ami.close()
        await self.pbx.close()

    def add_agent(self, exten: str, script: AgentScript, *, context: str = "agents") -> None:
        """Make `exten@context` behave like `script` (replaces a dialplan extension)."""
        ctx = self.pbx.dialplan.contexts.get(context)
        if ctx is not None:
            ctx.extensions.pop(exten, None)
        parse_dialplan(script.dialplan(exten, context), self.pbx.dialplan)

    async def originate_call(
        self,
        exten: str,
        context: str,
        caller: CallerScript | None = None,
        caller_id: tuple[str, str] = ("Alice", "+15551230001"),
        *,
        variables: Sequence[tuple[str, str]] = (),
    ) -> SimCall:
        """Place a call into `exten@context`; the scripted caller plays the ``;1`` half."""
        call = SimCall()
        run = CallerRun(self.pbx, caller or CallerScript())
        call.caller = run
        created = asyncio.Event()

        def on_channels(one: Channel, two: Channel) -> None:
            call.one, call.two = one, two
            run.watch(two)
            self._calls.append(call)
            created.set()

        request = OriginateRequest(
            channel=f"Local/{exten}@{context}",
            caller_id=caller_id,
            variables=tuple(variables),
            runner=run.run,
            on_channels=on_channels,
        )
        call.outcome = asyncio.ensure_future(originate(self.pbx, request))
        waiter = asyncio.ensure_future(created.wait())
        await asyncio.wait({call.outcome, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if call.outcome.done() and not created.is_set():
            call._done.set()
        return call
