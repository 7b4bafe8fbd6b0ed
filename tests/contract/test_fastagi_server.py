"""Contract tests of the FastAGI server against a raw TCP client that replays Asterisk's bytes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from ivr.adapters.fastagi_server import (
    AgiChannelHungUp,
    AgiCommandTimeout,
    AgiConnectionLost,
    AgiHandler,
    AgiSession,
    FastAgiServer,
)
from ivr.protocol.agi import (
    AgiCommand,
    AgiCommandError,
    AgiReply,
    GetVariable,
    Noop,
    command_from_argv,
    parse_command,
)
from tests.traces import load

WAIT = 10.0  # upper bound for every network wait in these tests
UNIQUE_ID = "1795331282.1"  # agi_uniqueid of ivr-dtmf-menu

StartServer = Callable[..., Awaitable[FastAgiServer]]


@dataclass
class Script:
    """A trace as Asterisk plays it: header chunks, (command, reply chunks), chunks after FIN."""

    header: list[bytes] = field(default_factory=list)
    turns: list[tuple[bytes, list[bytes]]] = field(default_factory=list)
    after_fin: list[bytes] = field(default_factory=list)


def script(name: str) -> Script:
    plan = Script()
    half_closed = False
    for record in load(f"{name}.agi.jsonl"):
        if record.dir == "meta" and record.event == "half-close":
            half_closed = True
        elif record.dir == "out":
            plan.turns.append((record.data, []))
        elif record.dir == "in" and record.data:
            if half_closed:
                plan.after_fin.append(record.data)
            elif plan.turns:
                plan.turns[-1][1].append(record.data)
            else:
                plan.header.append(record.data)
    return plan


def command_lines(name: str) -> list[str]:
    return [line.decode()[:-1] for line, _ in script(name).turns]


def typed_or_raw(line: str) -> AgiCommand | str:
    """The typed command when it rebuilds the recorded line exactly, else the line itself."""
    try:
        command = command_from_argv(parse_command(line))
    except AgiCommandError:
        return line
    return command if command.to_line() == line else line


Outcome = AgiReply | AgiChannelHungUp


@dataclass
class Recorder:
    """A route handler that sends a list of commands and records what came back."""

    commands: Sequence[AgiCommand | str]
    outcomes: list[Outcome] = field(default_factory=list)
    hung_up_before: list[bool] = field(default_factory=list)
    sessions: list[AgiSession] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, session: AgiSession) -> None:
        self.sessions.append(session)
        try:
            for command in self.commands:
                self.hung_up_before.append(session.hung_up)
                try:
                    self.outcomes.append(await session.send(command))
                except AgiChannelHungUp as err:
                    self.outcomes.append(err)
        finally:
            self.done.set()


def recorder_for(name: str) -> Recorder:
    return Recorder([typed_or_raw(line) for line in command_lines(name)])


async def play_asterisk(port: int, name: str) -> None:
    """Be Asterisk: send the recorded header block, check each command, answer as recorded."""
    plan = script(name)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        async with asyncio.timeout(WAIT):
            for chunk in plan.header:
                writer.write(chunk)
                await writer.drain()
            for line, chunks in plan.turns:
                assert await reader.readline() == line
                for chunk in chunks:
                    writer.write(chunk)
                    await writer.drain()
            assert await reader.read() == b"", "the script half-closes when its handler returns"
            for chunk in plan.after_fin:
                writer.write(chunk)
            await writer.drain()
    finally:
        writer.close()
        await writer.wait_closed()


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(WAIT):
        return await reader.read()


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    servers: list[FastAgiServer] = []

    async def start(routes: dict[str, AgiHandler], **options: Any) -> FastAgiServer:
        server = FastAgiServer(routes, port=0, **options)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


async def wait_for(condition: Callable[[], bool]) -> None:
    """Bounded polling for a condition nothing signals (the server's session count)."""
    async with asyncio.timeout(WAIT):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


# --- replaying the recorded sessions ------------------------------------------------------


async def test_given_dtmf_menu_trace_when_handler_sends_its_commands_then_bytes_and_replies_match(
    start_server: StartServer,
) -> None:
    handler = recorder_for("ivr-dtmf-menu")
    server = await start_server({"ivr/main": handler})

    await play_asterisk(server.port, "ivr-dtmf-menu")

    assert sum(isinstance(c, str) for c in handler.commands) == 2, "only FOO BAR and bare GET DATA"
    replies = [o for o in handler.outcomes if isinstance(o, AgiReply)]
    assert len(replies) == len(handler.commands) == 32
    by_line = dict(zip(command_lines("ivr-dtmf-menu"), replies, strict=True))
    assert by_line['STREAM FILE demo-congrats "0123456789*#"'].digits() == "5"
    assert by_line["GET DATA beep 8000 4"].digits() == "42"
    assert by_line["GET DATA beep 2000 1"].timeout
    assert by_line["GET VARIABLE GREETING"].data == "hello (world) x"
    assert by_line["FOO BAR"].code == 510
    assert len(by_line["GET DATA"].usage) == 2
    session = handler.sessions[0]
    assert session.env.args == ("arg1", "arg2")
    assert not session.hung_up
    await wait_for(lambda: server.active_sessions == 0)


async def test_given_an_agi_url_with_a_query_then_routed_by_path_with_params(
    start_server: StartServer,
) -> None:
    agent = recorder_for("agent-dial")
    other = recorder_for("ivr-dtmf-menu")
    server = await start_server({"ivr/agent": agent, "ivr/main": other, "ivr": other})

    await play_asterisk(server.port, "agent-dial")

    assert len(agent.sessions) == 1
    assert not other.sessions
    session = agent.sessions[0]
    assert dict(session.params) == {"queue": "support"}
    assert session.env.script_path == "ivr/agent"
    dial = agent.outcomes[2]
    assert isinstance(dial, AgiReply)
    assert dial.result == -1, "Dial returns -1 after the agent hangs up"
    assert [o.data for o in agent.outcomes[3:7] if isinstance(o, AgiReply)] == [
        "ANSWER",
        "Local/1001@trace-agents-00000001;1",
        "3",
        "3",
    ]


async def test_given_no_exact_route_then_the_longest_segment_prefix_handles_the_call(
    start_server: StartServer,
) -> None:
    prefix = recorder_for("agent-dial")
    catch_all = recorder_for("agent-dial")
    server = await start_server({"ivr": prefix, "/": catch_all, "iv": catch_all})

    await play_asterisk(server.port, "agent-dial")

    assert len(prefix.sessions) == 1
    assert not catch_all.sessions
    assert server.route("ivr/agent/deeper") is prefix
    assert server.route("/other/script/") is catch_all
    assert server.route("ivr") is prefix


async def test_given_hangup_line_before_the_reply_then_session_is_hung_up_and_511_raises(
    start_server: StartServer,
) -> None:
    handler = recorder_for("audiosocket-caller-hangup")
    server = await start_server({"ivr": handler})

    await play_asterisk(server.port, "audiosocket-caller-hangup")

    lines = command_lines("audiosocket-caller-hangup")
    status = lines.index("CHANNEL STATUS")
    assert handler.hung_up_before[status] is False, "nothing said hangup before CHANNEL STATUS"
    assert isinstance(handler.outcomes[status], AgiChannelHungUp)
    assert handler.sessions[0].hung_up
    last = handler.outcomes[-1]
    assert isinstance(last, AgiReply)
    assert last.data == "0", "variable commands still work"


async def test_given_a_dead_channel_then_511_raises_and_variable_commands_still_work(
    start_server: StartServer,
) -> None:
    handler = recorder_for("ivr-caller-hangup")
    server = await start_server({"ivr": handler})

    await play_asterisk(server.port, "ivr-caller-hangup")

    by_line = dict(zip(command_lines("ivr-caller-hangup"), handler.outcomes, strict=True))
    assert isinstance(by_line['STREAM FILE beep ""'], AgiChannelHungUp)
    assert isinstance(by_line["CHANNEL STATUS"], AgiChannelHungUp)
    stage = by_line["GET VARIABLE IVR_STAGE"]
    assert isinstance(stage, AgiReply)
    assert stage.data == "menu"
    # The HANGUP line after GET DATA's reply is read with the next command's reply: hung_up
    # reflects what the session has read, and it reads only while a command runs.
    assert handler.hung_up_before == [False, False, False, False, True, True, True, True, True]


# --- misbehaving peers --------------------------------------------------------------------


async def test_given_silent_garbage_and_early_eof_clients_then_each_is_dropped_and_a_call_completes(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ivr.adapters.fastagi_server")
    handler = recorder_for("ivr-dtmf-menu")
    server = await start_server({"ivr/main": handler}, header_timeout=1.0)
    header = b"".join(script("ivr-dtmf-menu").header)

    async def silent() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            return await read_until_closed(reader)
        finally:
            writer.close()
            await writer.wait_closed()

    async def garbage() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            return await read_until_closed(reader)
        finally:
            writer.close()
            await writer.wait_closed()

    async def early_eof() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(header[:100])
            writer.write_eof()
            await writer.drain()
            return await read_until_closed(reader)
        finally:
            writer.close()
            await writer.wait_closed()

    results = await asyncio.gather(
        silent(), garbage(), early_eof(), play_asterisk(server.port, "ivr-dtmf-menu")
    )

    assert list(results[:3]) == [b"", b"", b""], "each bad peer is disconnected without a command"
    assert len(handler.sessions) == 1
    assert len(handler.outcomes) == 32
    messages = [r.getMessage() for r in caplog.records]
    assert any("no header block within" in m for m in messages)
    assert sum("bad header block" in m for m in messages) == 2
    await wait_for(lambda: server.active_sessions == 0)


async def test_given_an_unknown_script_then_the_session_ends_without_commands(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    handler = recorder_for("ivr-dtmf-menu")
    server = await start_server({"somewhere/else": handler})
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"".join(script("ivr-dtmf-menu").header))
        await writer.drain()
        assert await read_until_closed(reader) == b""
        writer.write(b"HANGUP\n")
    finally:
        writer.close()
        await writer.wait_closed()
    assert not handler.sessions
    assert any("no FastAGI route for script 'ivr/main'" in r.getMessage() for r in caplog.records)


async def test_given_a_handler_error_then_it_is_logged_once_with_the_unique_id_and_closed(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(session: AgiSession) -> None:
        raise RuntimeError("handler bug")

    server = await start_server({"ivr/main": broken})
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"".join(script("ivr-dtmf-menu").header))
        await writer.drain()
        assert await read_until_closed(reader) == b""
        writer.write(b"HANGUP\n")
    finally:
        writer.close()
        await writer.wait_closed()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert UNIQUE_ID in errors[0].getMessage()
    assert errors[0].exc_info is not None


async def test_given_no_reply_in_time_then_command_timeout_and_the_connection_is_closed(
    start_server: StartServer,
) -> None:
    seen: list[Exception] = []

    async def handler(session: AgiSession) -> None:
        try:
            await session.send(Noop(), timeout=0.2)
        except AgiCommandTimeout as err:
            seen.append(err)
        try:
            await session.send(GetVariable("X"))
        except AgiConnectionLost as err:
            seen.append(err)

    server = await start_server({"ivr/main": handler})
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"".join(script("ivr-dtmf-menu").header))
        await writer.drain()
        assert await read_until_closed(reader) == b"NOOP\n"
    finally:
        writer.close()
        await writer.wait_closed()
    assert [type(e) for e in seen] == [AgiCommandTimeout, AgiConnectionLost]


async def test_given_asterisk_closes_before_replying_then_connection_lost(
    start_server: StartServer,
) -> None:
    seen: list[Exception] = []
    done = asyncio.Event()

    async def handler(session: AgiSession) -> None:
        try:
            await session.send(Noop())
        except AgiConnectionLost as err:
            seen.append(err)
        finally:
            done.set()

    server = await start_server({"ivr/main": handler})
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"".join(script("ivr-dtmf-menu").header))
        await writer.drain()
        async with asyncio.timeout(WAIT):
            assert await reader.readline() == b"NOOP\n"
    finally:
        writer.close()
        await writer.wait_closed()
    async with asyncio.timeout(WAIT):
        await done.wait()
    assert [type(e) for e in seen] == [AgiConnectionLost]


async def test_close_cancels_running_sessions_and_waits_for_them(
    start_server: StartServer,
) -> None:
    cancelled = asyncio.Event()

    async def handler(session: AgiSession) -> None:
        try:
            await session.send(Noop(), timeout=60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    server = await start_server({"ivr/main": handler})
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"".join(script("ivr-dtmf-menu").header))
        await writer.drain()
        async with asyncio.timeout(WAIT):
            assert await reader.readline() == b"NOOP\n"
            await server.close()
        assert cancelled.is_set()
        assert server.active_sessions == 0
        assert await read_until_closed(reader) == b""
    finally:
        writer.close()
        await writer.wait_closed()


async def test_caller_numbers_are_masked_in_log_lines(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    handler = recorder_for("ivr-dtmf-menu")
    server = await start_server({"ivr/main": handler})

    await play_asterisk(server.port, "ivr-dtmf-menu")

    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "caller=********0001" in text
    assert "+15551230001" not in text
