"""The simulator's res_agi: the ``AGI(agi://host:port/script?query,arg1,...)`` application.

Behaviour from ``tests/fixtures/asterisk-traces/README.md`` section 4.2 and the ``*.agi.jsonl``
traces (Asterisk 22.10.1, FastAGI):

* connect, write the ``agi_*`` header block (LF only, field order as recorded, ``agi_dnid`` and
  ``agi_rdnis`` ``unknown``, ``agi_accountcode: `` with its trailing space, the query string
  kept in ``agi_network_script``), in two writes like the trace;
* read one command per line, announce it with ``AGIExecStart``, run it, reply, then
  ``AGIExecEnd`` (``ResultCode``/``Result``: 200 Success, -1 Failure, 200 Unknown Result, 510,
  520 Usage, 511);
* digits that arrive while no command runs are lost (res_agi reads and drops frames);
* after the channel hangs up, an unsolicited ``HANGUP\\n`` follows about 40 ms later; media and
  channel commands then get 511, variable commands, EXEC, VERBOSE, NOOP and HANGUP still run;
* when the script half-closes, ``HANGUP\\n`` is written again and the socket closed;
* ``AGISTATUS`` is HANGUP if the channel hung up, else FAILURE if any command's handler failed
  (a STREAM FILE of a missing prompt), else SUCCESS; a refused connection gives FAILURE and the
  dialplan continues. With HANGUP the application returns -1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from asterisk_sim import event_templates as ev
from asterisk_sim.apps import split_args
from asterisk_sim.channels import Channel, ChannelState
from asterisk_sim.pbx import Pbx
from asterisk_sim.prompts import RATE, say_digits_files, say_number_files
from ivr.protocol.agi import (
    HANGUP_LINE,
    REPLY_DEAD,
    REPLY_INVALID,
    AgiCommandDecoder,
    encode_environment,
    format_reply,
    format_usage,
    parse_command,
)

_log = logging.getLogger(__name__)

VERSION = "22.10.1"
ANSWER_SECONDS = 0.02  # ANSWER replies ~20 ms after the Newstate in the traces
HANGUP_LINE_DELAY = 0.04  # seconds after the hangup (the traces show 0 to 45 ms)

SUCCESS, FAILURE, USAGE = 0, 2, 1
DEAD_TEXT = "Command Not Permitted on a dead channel or intercept routine"

USAGE_TEXT: dict[str, list[str]] = {
    "get data": [
        "Stream the given <replaceable>file</replaceable>, and receive DTMF data.",
        "Returns the digits received from the channel at the other end.",
    ],
}


@dataclass
class Reply:
    """A handler's outcome: bytes for the script and res_agi's handler status."""

    data: bytes
    status: int = SUCCESS
    code: str = "200"
    result: str = "Success"


def _ok(data: bytes) -> Reply:
    return Reply(data)


class AgiSession:
    """One FastAGI session for one channel."""

    def __init__(
        self,
        pbx: Pbx,
        ch: Channel,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.pbx = pbx
        self.ch = ch
        self.reader = reader
        self.writer = writer
        self.failed = False
        self._write_lock = asyncio.Lock()

    async def send(self, data: bytes) -> None:
        async with self._write_lock:
            if self.writer.is_closing():
                return
            self.writer.write(data)
            with contextlib.suppress(ConnectionError, OSError):
                await self.writer.drain()

    async def send_environment(self, url: str, args: list[str]) -> None:
        script = url.split("/", 3)[3] if url.count("/") >= 3 else ""
        ch = self.ch
        caller = ch.caller_num if ch.caller_num != "<unknown>" else "unknown"
        name = ch.caller_name if ch.caller_name != "<unknown>" else "unknown"
        first = [
            ("network", "yes"),
            ("network_script", script),
            ("request", url),
            ("channel", ch.name),
            ("language", ch.language),
            ("type", ch.tech),
            ("uniqueid", ch.uniqueid),
            ("version", VERSION),
            ("callerid", caller),
            ("calleridname", name),
            ("callingpres", "0"),
            ("callingani2", "0"),
            ("callington", "0"),
            ("callingtns", "0"),
            ("dnid", ch.dnid or "unknown"),
            ("rdnis", "unknown"),
            ("context", ch.context),
        ]
        second = [
            ("extension", ch.exten),
            ("priority", str(ch.priority)),
            ("enhanced", "0.0"),
            ("accountcode", ch.accountcode),
            ("threadid", str(random.randint(139_000_000_000_000, 140_999_999_999_999))),
        ]
        second += [(f"arg_{i}", arg) for i, arg in enumerate(args, 1)]
        block = encode_environment([(f"agi_{k}", v) for k, v in first + second])
        split_at = block.index(b"agi_extension: ")
        await self.send(block[:split_at])
        await self.send(block[split_at:])

    async def run(self) -> None:
        """Serve commands until the script closes its side."""
        decoder = AgiCommandDecoder()
        watcher = asyncio.ensure_future(self._hangup_line())
        try:
            while True:
                data = await self._read_or_redirect()
                if not data:
                    break
                decoder.receive_data(data)
                while (line := decoder.next_command()) is not None:
                    await self.execute(line)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await self.send(HANGUP_LINE)

    async def _read_or_redirect(self) -> bytes:
        if self.ch.redirect_to is not None:
            return b""
        read = asyncio.ensure_future(self.reader.read(65536))
        redirect = asyncio.ensure_future(self.ch.redirect_event.wait())
        try:
            await asyncio.wait({read, redirect}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            redirect.cancel()
        if read.done():
            try:
                return read.result()
            except (ConnectionError, OSError):
                return b""
        read.cancel()
        return b""

    async def _hangup_line(self) -> None:
        await self.ch.hangup_event.wait()
        await self.pbx.clock.sleep(HANGUP_LINE_DELAY)
        await self.send(HANGUP_LINE)

    async def execute(self, line: str) -> None:
        """One command: AGIExecStart, handler, reply, AGIExecEnd."""
        ch = self.ch
        command_id = str(random.randint(1, 2**31 - 1))
        self.pbx.emit(ev.agi_exec_start(ch, command_id, line))
        try:
            argv = list(parse_command(line))
        except ValueError:
            argv = line.split()
        reply = await self.dispatch(argv)
        if reply.status == FAILURE and not ch.is_hungup:
            self.failed = True
        if reply.code == "520":
            head, _, rest = reply.data.partition(b"\n")
            await self.send(head + b"\n")
            await self.send(rest)
        else:
            await self.send(reply.data)
        self.pbx.emit(ev.agi_exec_end(ch, command_id, line, reply.code, reply.result))

    async def dispatch(self, argv: list[str]) -> Reply:
        words = [a.lower() for a in argv]
        for size in (3, 2, 1):
            key = " ".join(words[:size])
            entry = COMMANDS.get(key)
            if entry is not None and len(words) >= size:
                handler, dead_ok = entry
                if self.ch.is_hungup and not dead_ok:
                    return Reply(REPLY_DEAD, FAILURE, "511", DEAD_TEXT)
                try:
                    return await handler(self, argv[size:])
                except UsageError:
                    usage = format_usage(USAGE_TEXT.get(key, [f"Usage: {key.upper()}"]))
                    return Reply(usage, USAGE, "520", "Usage")
        return Reply(REPLY_INVALID, SUCCESS, "510", "Invalid or unknown command")


class UsageError(Exception):
    """Wrong arguments for an AGI command (res_agi RESULT_SHOWUSAGE)."""


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError as err:
        raise UsageError(text) from err


def _need(args: list[str], count: int) -> None:
    if len(args) < count:
        raise UsageError(" ".join(args))


Handler = Callable[[AgiSession, list[str]], Awaitable[Reply]]


async def _answer(s: AgiSession, args: list[str]) -> Reply:
    if s.ch.state != ChannelState.UP:
        s.pbx.answer(s.ch)
        await s.pbx.clock.sleep(ANSWER_SECONDS)
    return _ok(format_reply(0))


async def _stream_file(s: AgiSession, args: list[str]) -> Reply:
    _need(args, 2)
    result = await s.pbx.stream(s.ch, args[0], args[1])
    if not result.ok:
        return Reply(format_reply(-1, endpos=0), FAILURE, "-1", "Failure")
    s.pbx.set_var(s.ch, "PLAYBACKSTATUS", "FAILED" if result.digit else "SUCCESS")
    if result.hungup:
        return _ok(format_reply(-1, endpos=result.endpos))
    code = ord(result.digit) if result.digit else 0
    return _ok(format_reply(code, endpos=result.endpos))


async def _get_option(s: AgiSession, args: list[str]) -> Reply:
    _need(args, 2)
    timeout = _int(args[2]) / 1000 if len(args) > 2 else 5.0
    if timeout <= 0:
        timeout = 5.0
    result = await s.pbx.stream(s.ch, args[0], args[1])
    if not result.ok:
        return Reply(format_reply(-1, endpos=0), FAILURE, "-1", "Failure")
    if result.hungup:
        return _ok(format_reply(-1, endpos=result.endpos))
    if result.digit:
        return _ok(format_reply(ord(result.digit), endpos=result.endpos))
    digit = await _wait_digit(s, timeout, args[1])
    if digit is None:
        return _ok(format_reply(-1, endpos=result.endpos))
    return _ok(format_reply(ord(digit) if digit else 0, endpos=result.endpos))


async def _wait_digit(s: AgiSession, timeout: float | None, allowed: str | None) -> str | None:
    """The first digit (in `allowed` unless None); "" on timeout; None on hangup."""
    pbx, ch = s.pbx, s.ch
    deadline = None if timeout is None else pbx.clock.now() + timeout
    ch.reading += 1
    try:
        while True:
            left = None if deadline is None else deadline - pbx.clock.now()
            if left is not None and left <= 0:
                return ""
            got = await pbx.next_digit(ch, left)
            if got is None or got == "":
                return got
            if allowed is None or got in allowed:
                return got
    finally:
        ch.reading -= 1


async def _get_data(s: AgiSession, args: list[str]) -> Reply:
    _need(args, 1)
    timeout = _int(args[1]) / 1000 if len(args) > 1 else 6.0
    max_digits = _int(args[2]) if len(args) > 2 else 1024
    if timeout <= 0:
        timeout = 6.0
    result = await s.pbx.stream(s.ch, args[0], "0123456789*#")
    if not result.ok or result.hungup:
        return _ok(format_reply(-1))
    digits = ""
    pending = result.digit
    while len(digits) < max_digits:
        got = pending or await _wait_digit(s, timeout, None)
        pending = ""
        if got is None:
            return _ok(format_reply(-1))
        if got == "":
            return _ok(format_reply(digits, timeout=True))
        if got == "#":
            break
        digits += got
    return _ok(format_reply(digits))


async def _wait_for_digit(s: AgiSession, args: list[str]) -> Reply:
    _need(args, 1)
    ms = _int(args[0])
    digit = await _wait_digit(s, None if ms < 0 else ms / 1000, None)
    if digit is None:
        return _ok(format_reply(-1))
    return _ok(format_reply(ord(digit) if digit else 0))


async def _say_files(s: AgiSession, files: list[str], escape: str) -> Reply:
    for name in files:
        result = await s.pbx.stream(s.ch, name, escape)
        if result.hungup:
            return _ok(format_reply(-1))
        if result.digit:
            return _ok(format_reply(ord(result.digit)))
    return _ok(format_reply(0))


async def _say_digits(s: AgiSession, args: list[str]) -> Reply:
    _need(args, 2)
    return await _say_files(s, say_digits_files(args[0]), args[1])


async def _say_number(s: AgiSession, args: list[str]) -> Reply:
    _need(args, 2)
    return await _say_files(s, say_number_files(_int(args[0])), args[1])


async def _set_variable(s: AgiSession, args: list[str]) -> Reply:
    _need(args, 2)
    s.pbx.set_var(s.ch, args[0], args[1])
    return _ok(format_reply(1))


async def _get_variable(s: AgiSession, args: list[str]) -> Reply:
    _need(args, 1)
    value = s.pbx.read_variable(s.ch, args[0])
    if value is None:
        return _ok(format_reply(0))
    return _ok(format_reply(1, data=value))


async def _get_full_variable(s: AgiSession, args: list[str]) -> Reply:
    _need(args, 1)
    target: Channel | None = s.ch
    if len(args) > 1:
        target = s.pbx.channels.get(args[1])
        if target is None:
            return _ok(format_reply(0))
    return _ok(format_reply(1, data=s.pbx.substitute(target, args[0])))


async def _exec(s: AgiSession, args: list[str]) -> Reply:
    _need(args, 1)
    ch = s.ch
    app, data = args[0], " ".join(args[1:])
    saved = (ch.application, ch.app_data)
    ch.application, ch.app_data = app, data
    try:
        res = await s.pbx.exec_app(ch, app, data)
    finally:
        ch.application, ch.app_data = saved
    if res == 0:
        return _ok(format_reply(0))
    return Reply(format_reply(res), SUCCESS, "200", "Unknown Result")


async def _channel_status(s: AgiSession, args: list[str]) -> Reply:
    target: Channel | None = s.ch
    if args:
        target = s.pbx.channels.get(args[0])
    if target is None:
        return _ok(format_reply(-1))
    return _ok(format_reply(int(target.state)))


async def _verbose(s: AgiSession, args: list[str]) -> Reply:
    _need(args, 1)
    _log.debug("AGI VERBOSE on %s: %s", s.ch.name, args[0])
    return _ok(format_reply(1))


async def _hangup(s: AgiSession, args: list[str]) -> Reply:
    target: Channel | None = s.ch
    if args:
        target = s.pbx.channels.get(args[0])
    if target is None:
        return _ok(format_reply(-1))
    s.pbx.soft_hangup(target, event_cause=32, cause=None)
    return _ok(format_reply(1))


async def _set_music(s: AgiSession, args: list[str]) -> Reply:
    _need(args, 1)
    if args[0].lower() == "on":
        s.pbx.start_moh(s.ch, args[1] if len(args) > 1 else "default")
    else:
        s.pbx.stop_moh(s.ch)
    return _ok(format_reply(0))


async def _noop(s: AgiSession, args: list[str]) -> Reply:
    return _ok(format_reply(0))


async def _record_file(s: AgiSession, args: list[str]) -> Reply:
    """RECORD FILE file format escape timeout: records silence (the simulator has no audio)."""
    _need(args, 4)
    escape, ms = args[2], _int(args[3])
    start = s.pbx.clock.now()
    digit = await _wait_digit(s, None if ms < 0 else ms / 1000, escape)
    endpos = int((s.pbx.clock.now() - start) * RATE)
    if s.pbx.config.write_recordings:
        _write_silence(s, f"{args[0]}.{args[1]}", endpos)
    if digit is None:
        return _ok(format_reply(-1, data="hangup", endpos=endpos))
    if digit:
        return _ok(format_reply(ord(digit), data="dtmf", endpos=endpos))
    return _ok(format_reply(0, data="timeout", endpos=endpos))


def _write_silence(s: AgiSession, name: str, samples: int) -> None:
    import wave
    from pathlib import Path

    path = Path(name)
    if not path.is_absolute():
        path = s.pbx.config.spool_dir / "tmp" / path
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(RATE)
            wav.writeframes(b"\x00\x00" * samples)


COMMANDS: dict[str, tuple[Handler, bool]] = {
    "answer": (_answer, False),
    "stream file": (_stream_file, False),
    "get option": (_get_option, False),
    "get data": (_get_data, False),
    "wait for digit": (_wait_for_digit, False),
    "say digits": (_say_digits, False),
    "say number": (_say_number, False),
    "set variable": (_set_variable, True),
    "get variable": (_get_variable, True),
    "get full variable": (_get_full_variable, True),
    "exec": (_exec, True),
    "channel status": (_channel_status, False),
    "verbose": (_verbose, True),
    "hangup": (_hangup, True),
    "set music": (_set_music, False),
    "noop": (_noop, True),
    "record file": (_record_file, False),
}


def _target(pbx: Pbx, url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 4573
    overrides = pbx.config.agi_overrides
    return overrides.get(f"{host}:{port}") or overrides.get("*") or (host, port)


async def app_agi(pbx: Pbx, ch: Channel, data: str) -> int:
    """AGI(agi://host:port/script,args...): run a FastAGI session; sets AGISTATUS."""
    args = split_args(data)
    url = args[0].strip()
    if not url.startswith("agi://"):
        pbx.set_var(ch, "AGISTATUS", "FAILURE")
        return 0
    host, port = _target(pbx, url)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), pbx.config.agi_connect_timeout
        )
    except (OSError, TimeoutError) as err:
        _log.warning("FastAGI connection to %s:%s failed: %s", host, port, err)
        pbx.set_var(ch, "AGISTATUS", "FAILURE")
        return 0
    session = AgiSession(pbx, ch, reader, writer)
    try:
        await session.send_environment(url, args[1:])
        await session.run()
    except (ConnectionError, OSError) as err:
        _log.info("FastAGI session on %s ended: %s", ch.name, err)
    finally:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            writer.close()
            await writer.wait_closed()
    if ch.is_hungup:
        pbx.set_var(ch, "AGISTATUS", "HANGUP")
        return -1
    pbx.set_var(ch, "AGISTATUS", "FAILURE" if session.failed else "SUCCESS")
    return 0
