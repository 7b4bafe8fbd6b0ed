"""Scripted callers and agents on the simulator, seen from a raw FastAGI server and events."""

from __future__ import annotations

import asyncio

import pytest

from asterisk_sim.scripts import AgentScript, CallerScript, HangUp, Press, WaitForPrompt
from asterisk_sim.simulator import AsteriskSimulator

pytestmark = pytest.mark.timeout(60)

DIALPLAN = """
[ivr]
exten => s,1,NoOp(IVR on ${CHANNEL})
 same => n,AGI(agi://127.0.0.1:4573/ivr/main,${TARGET})
 same => n,NoOp(AGI finished: AGISTATUS=${AGISTATUS})
 same => n,Hangup()

[agents]
"""


class ScriptedAgi:
    """A raw FastAGI server running a fixed list of commands and keeping the replies.

    ``#sleep <seconds>`` pauses the script (wall clock) between two commands.
    """

    def __init__(self, commands: list[str]) -> None:
        self.commands = commands
        self.replies: list[str] = []
        self.headers: dict[str, str] = {}
        self.done = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _reply(self, reader: asyncio.StreamReader) -> str:
        while True:
            line = (await asyncio.wait_for(reader.readline(), 20)).decode().rstrip("\n")
            if line != "HANGUP":
                return line

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (line := (await asyncio.wait_for(reader.readline(), 5)).decode()) != "\n":
            key, _, value = line.rstrip("\n").partition(": ")
            self.headers[key] = value
        for command in self.commands:
            if command.startswith("#sleep "):
                await asyncio.sleep(float(command.split()[1]))
                continue
            writer.write(f"{command}\n".encode())
            await writer.drain()
            self.replies.append(await self._reply(reader))
        writer.write_eof()
        await reader.read()
        writer.close()
        self.done.set()


async def run_call(
    commands: list[str], caller: CallerScript, agents: dict[str, AgentScript], target: str = ""
) -> tuple[ScriptedAgi, AsteriskSimulator, list[list[tuple[str, str]]]]:
    agi = ScriptedAgi(commands)
    await agi.start()
    sim = AsteriskSimulator(DIALPLAN, time_scale=0.1, agi_override=("127.0.0.1", agi.port))
    for exten, script in agents.items():
        sim.add_agent(exten, script, context="agents")
    await sim.start()
    try:
        call = await sim.originate_call("s", "ivr", caller, variables=[("TARGET", target)])
        await call.finished(timeout=30)
        await asyncio.wait_for(agi.done.wait(), 10)
        return agi, sim, call.events
    finally:
        await sim.close()
        await agi.close()


def names(events: list[list[tuple[str, str]]], event: str) -> list[dict[str, str]]:
    return [dict(e) for e in events if dict(e).get("Event") == event]


async def test_given_a_caller_who_presses_42_when_get_data_runs_then_the_ivr_reads_42() -> None:
    caller = CallerScript([WaitForPrompt("GET DATA"), Press("42#")])
    agi, _, _ = await run_call(["ANSWER", "GET DATA beep 3000 4", "NOOP"], caller, {})
    assert agi.replies == ["200 result=0", "200 result=42", "200 result=0"]
    assert agi.headers["agi_callerid"] == "+15551230001"
    assert agi.headers["agi_network_script"] == "ivr/main"


async def test_given_digits_pressed_while_no_command_runs_then_they_are_lost() -> None:
    caller = CallerScript([WaitForPrompt("STREAM FILE"), Press("9", delay=0.6)])
    commands = ["ANSWER", 'STREAM FILE beep ""', "#sleep 0.2", "WAIT FOR DIGIT 1500"]
    agi, _, _ = await run_call(commands, caller, {})
    assert agi.replies[-1] == "200 result=0"


async def test_given_an_agent_who_answers_when_dialled_then_bridge_and_dialstatus_answer() -> None:
    agents = {"1001": AgentScript(answer_after=0.5, talk_for=1.0)}
    commands = ["ANSWER", "EXEC Dial Local/1001@agents,10", "GET VARIABLE DIALSTATUS"]
    agi, sim, _ = await run_call(commands, CallerScript(), agents)
    assert agi.replies == ["200 result=0", "200 result=-1", "200 result=1 (ANSWER)"]
    events = sim.events
    assert [e["DialStatus"] for e in names(events, "DialState")] == ["RINGING"]
    assert len(names(events, "BridgeEnter")) == 2
    linked = {e["Linkedid"] for e in names(events, "Newchannel")}
    assert len(linked) == 1


@pytest.mark.parametrize(
    ("script", "status", "result"),
    [
        (AgentScript(answer_after=None), "NOANSWER", "200 result=0"),
        (AgentScript(busy=True), "BUSY", "200 result=0"),
    ],
)
async def test_given_an_agent_who_does_not_take_the_call_then_dialstatus_says_why(
    script: AgentScript, status: str, result: str
) -> None:
    commands = ["ANSWER", "EXEC Dial Local/1002@agents,2", "GET VARIABLE DIALSTATUS"]
    agi, _, _ = await run_call(commands, CallerScript(), {"1002": script})
    assert agi.replies == ["200 result=0", result, f"200 result=1 ({status})"]


async def test_given_a_caller_who_hangs_up_during_get_data_then_minus_1_and_agistatus_hangup() -> (
    None
):
    caller = CallerScript([WaitForPrompt("GET DATA"), HangUp()])
    commands = ["ANSWER", "GET DATA beep 10000 4", 'STREAM FILE beep ""', "GET VARIABLE X"]
    agi, sim, _ = await run_call(commands, caller, {})
    assert agi.replies == [
        "200 result=0",
        "200 result=-1",
        "511 Command Not Permitted on a dead channel or intercept routine",
        "200 result=0",
    ]
    agistatus = [dict(e) for e in sim.events if dict(e).get("Variable") == "AGISTATUS"]
    assert [e["Value"] for e in agistatus] == ["HANGUP"]


async def test_given_a_queue_that_is_not_configured_when_queue_runs_then_unknown_and_go_on() -> (
    None
):
    commands = ["ANSWER", "EXEC Queue nosuchqueue", "GET VARIABLE QUEUESTATUS", "NOOP"]
    agi, _, _ = await run_call(commands, CallerScript(), {})
    assert agi.replies == ["200 result=0", "200 result=0", "200 result=1 (UNKNOWN)", "200 result=0"]
