"""Sans-I/O FastAGI codec: the header block, command lines and replies, for both ends.

Theory of operation
-------------------

This follows section 4.2 "FastAGI" of ``tests/fixtures/asterisk-traces/README.md`` and the
``*.agi.jsonl`` traces recorded from Asterisk 22.10.1, checked against ``res/res_agi.c``
(``setup_env()``, ``agi_handle_command()``, ``run_agi()``). The traces win.

* **Headers.** Asterisk connects to us and writes ``agi_<name>: <value>\\n`` lines (LF only),
  ended by one empty line; the block may arrive in several reads. Each line is checked as soon
  as it is complete: the name must be ``agi_`` plus letters, digits and ``_`` and the
  separator exactly ``": "`` (values keep trailing spaces: ``agi_accountcode: ``). Anything
  else (an HTTP request, binary noise), a block over ``max_header_bytes``, or EOF before the
  empty line is an :class:`AgiProtocolError`, so a bad or silent peer never stalls a reader.
* **Commands** are one line each; :meth:`AgiServerConnection.send_command` returns the bytes to
  write and allows one command outstanding at a time (res_agi reads the next line only after
  replying). Typed commands and res_agi's quoting rules live in :mod:`ivr.protocol.agi_commands`.
* **Replies** are ``200 result=<raw>[ (<data>)][ endpos=<n>]``: ``raw`` runs to the first
  space and may be empty (``200 result= (timeout)``) or digits (GET DATA); ``data`` is taken
  from the first ``(`` to the **last** ``)``, because GET VARIABLE values are not escaped
  (``200 result=1 (hello (world) x)``). Also ``510 Invalid or unknown command``, ``511 Command
  Not Permitted on a dead channel or intercept routine``, and the multi-line usage reply: a
  ``520-`` line, usage lines that start with no code, and a closing ``520 `` line (a single
  ``520 `` line when no usage text exists). ``100 Trying`` lines from old Asterisks are skipped.
* **HANGUP.** ``HANGUP\\n`` is unsolicited: after the channel hangs up (even between a command
  and its reply) and again when the script half-closes. It is surfaced as :class:`AgiHangup`
  wherever it appears and never taken as a reply. (It cannot appear inside a 520 block: res_agi
  writes both from one thread.)
* **EOF** (``receive_data(b"")``) between lines closes the connection (state ``CLOSED``;
  ``next_event`` then returns ``None``); EOF inside a line, a 520 block or the header block is
  an :class:`AgiProtocolError`. After any error the connection stays broken and raises it again.

The server side's states, as a table (anything not listed is an error)::

    state          input                  next state
    AWAIT_HEADERS  header block complete  IDLE
    IDLE           send_command()         AWAIT_REPLY
    IDLE           HANGUP line            IDLE
    IDLE           EOF                    CLOSED
    AWAIT_REPLY    100 Trying line        AWAIT_REPLY
    AWAIT_REPLY    HANGUP line            AWAIT_REPLY
    AWAIT_REPLY    reply complete         IDLE
    AWAIT_REPLY    EOF                    CLOSED

The Asterisk-side helpers (:func:`encode_environment`, :class:`AgiCommandDecoder`,
:func:`parse_command`, :func:`format_reply`, :func:`format_usage` and the constant replies) let
the simulator produce the same bytes as the traces.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from urllib.parse import parse_qsl

from ivr.errors import IvrError
from ivr.protocol.agi_commands import (
    AGI_BUF_LEN,
    AgiCommand,
    AgiCommandError,
    AgiCommandSyntaxError,
    AgiEncodeError,
    AgiUnknownCommand,
    Answer,
    ChannelStatus,
    Exec,
    GetData,
    GetFullVariable,
    GetOption,
    GetVariable,
    Hangup,
    Noop,
    RecordFile,
    SayDigits,
    SayNumber,
    SetMusic,
    SetVariable,
    StreamFile,
    Verbose,
    WaitForDigit,
    command_from_argv,
    command_name,
    parse_command,
    quote,
)

__all__ = [
    "AGI_BUF_LEN",
    "HANGUP_LINE",
    "REPLY_DEAD",
    "REPLY_INVALID",
    "AgiCommand",
    "AgiCommandDecoder",
    "AgiCommandError",
    "AgiCommandSyntaxError",
    "AgiEncodeError",
    "AgiEnvironment",
    "AgiHangup",
    "AgiProtocolError",
    "AgiReply",
    "AgiServerConnection",
    "AgiState",
    "AgiStateError",
    "AgiUnknownCommand",
    "Answer",
    "ChannelStatus",
    "Exec",
    "GetData",
    "GetFullVariable",
    "GetOption",
    "GetVariable",
    "Hangup",
    "Noop",
    "RecordFile",
    "SayDigits",
    "SayNumber",
    "SetMusic",
    "SetVariable",
    "StreamFile",
    "Verbose",
    "WaitForDigit",
    "command_from_argv",
    "command_name",
    "encode_environment",
    "format_reply",
    "format_usage",
    "parse_command",
    "quote",
]

HANGUP_LINE = b"HANGUP\n"
REPLY_INVALID = b"510 Invalid or unknown command\n"
REPLY_DEAD = b"511 Command Not Permitted on a dead channel or intercept routine\n"
USAGE_FIRST = "520-Invalid command syntax.  Proper usage follows:"
USAGE_LAST = "520 End of proper usage."
USAGE_NONE = "520 Invalid command syntax.  Proper usage not available."

_ENCODING = "utf-8"
_ERRORS = "surrogateescape"
_HEADER_NAME = re.compile(r"agi_[A-Za-z0-9_]+\Z")
_REPLY_LINE = re.compile(r"([0-9]{3})([ -])(.*)\Z", re.DOTALL)
_INT = re.compile(r"-?[0-9]+\Z")
_ENDPOS = re.compile(r"endpos=(-?[0-9]+)")
# Commands whose result is the ASCII code of a DTMF digit (0: none, -1: hangup or error).
_ASCII_RESULT = frozenset(
    {"STREAM FILE", "GET OPTION", "WAIT FOR DIGIT", "SAY DIGITS", "SAY NUMBER", "RECORD FILE", ""}
)


class AgiProtocolError(IvrError):
    """The bytes from the peer break the FastAGI framing (or arrive when none may)."""

    error_id = "agi-protocol-error"


class AgiStateError(IvrError):
    """Our side used the connection out of turn (a command while another is outstanding)."""

    error_id = "agi-state-error"


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgiEnvironment:
    """The ``agi_*`` header block Asterisk sends first, names as sent, in wire order."""

    variables: tuple[tuple[str, str], ...]

    def get(self, name: str, default: str = "") -> str:
        """The first value of ``agi_<name>``; `name` may be given with or without ``agi_``."""
        key = name if name.startswith("agi_") else f"agi_{name}"
        for found, value in self.variables:
            if found == key:
                return value
        return default

    @property
    def network_script(self) -> str:
        """The URL path after ``host:port/``, query string included (``ivr/agent?queue=x``)."""
        return self.get("network_script")

    @property
    def script_path(self) -> str:
        """``network_script`` without the query string."""
        return self.network_script.partition("?")[0]

    @property
    def params(self) -> Mapping[str, str]:
        """The query string of ``network_script`` as a read-only mapping (last value wins)."""
        query = self.network_script.partition("?")[2]
        return MappingProxyType(dict(parse_qsl(query, keep_blank_values=True)))

    @property
    def channel(self) -> str:
        return self.get("channel")

    @property
    def unique_id(self) -> str:
        return self.get("uniqueid")

    @property
    def caller_id(self) -> str:
        return self.get("callerid")

    @property
    def caller_id_name(self) -> str:
        return self.get("calleridname")

    @property
    def context(self) -> str:
        return self.get("context")

    @property
    def extension(self) -> str:
        return self.get("extension")

    @property
    def priority(self) -> str:
        return self.get("priority")

    @property
    def language(self) -> str:
        return self.get("language")

    @property
    def args(self) -> tuple[str, ...]:
        """``agi_arg_1`` … ``agi_arg_N``: the arguments of ``AGI(url,arg1,...)``."""
        numbered = dict(self.variables)
        out: list[str] = []
        while (value := numbered.get(f"agi_arg_{len(out) + 1}")) is not None:
            out.append(value)
        return tuple(out)


@dataclass(frozen=True, slots=True)
class AgiReply:
    """One reply to one command.

    ``command`` is the command words it answers (``"GET DATA"``), filled in by
    :class:`AgiServerConnection` from the outstanding command; :meth:`digits` needs it.
    """

    code: int
    result: int | None = None
    raw_result: str = ""
    data: str | None = None
    timeout: bool = False
    endpos: int | None = None
    usage: tuple[str, ...] = ()
    command: str = ""

    def digits(self) -> str:
        """The DTMF the caller entered, whatever the command's way of reporting it.

        GET DATA returns the digits themselves (``result=42`` is "4" then "2"; ``-1`` means
        failure); STREAM FILE, GET OPTION, WAIT FOR DIGIT, SAY * and RECORD FILE return the
        ASCII code of one digit (``result=53`` is "5"). Other commands, and other codes than
        200, have no digits. A reply whose command is unknown is read as an ASCII code.
        """
        if self.code != 200:
            return ""
        if self.command == "GET DATA":
            return "" if self.raw_result.startswith("-") else self.raw_result
        if self.command in _ASCII_RESULT and self.result is not None and 0 < self.result < 256:
            return chr(self.result)
        return ""


@dataclass(frozen=True, slots=True)
class AgiHangup:
    """The unsolicited ``HANGUP`` line (the channel hung up, or the script ended)."""


class AgiState(StrEnum):
    AWAIT_HEADERS = "await-headers"
    IDLE = "idle"
    AWAIT_REPLY = "await-reply"
    CLOSED = "closed"


class _Input(StrEnum):
    HEADERS = "header block complete"
    SEND = "send_command()"
    HANGUP = "HANGUP line"
    TRYING = "100 Trying line"
    REPLY = "reply complete"
    EOF = "EOF"


_TRANSITIONS: Mapping[tuple[AgiState, _Input], AgiState] = {
    (AgiState.AWAIT_HEADERS, _Input.HEADERS): AgiState.IDLE,
    (AgiState.IDLE, _Input.SEND): AgiState.AWAIT_REPLY,
    (AgiState.IDLE, _Input.HANGUP): AgiState.IDLE,
    (AgiState.IDLE, _Input.EOF): AgiState.CLOSED,
    (AgiState.AWAIT_REPLY, _Input.TRYING): AgiState.AWAIT_REPLY,
    (AgiState.AWAIT_REPLY, _Input.HANGUP): AgiState.AWAIT_REPLY,
    (AgiState.AWAIT_REPLY, _Input.REPLY): AgiState.IDLE,
    (AgiState.AWAIT_REPLY, _Input.EOF): AgiState.CLOSED,
}


def _parse_200(text: str, command: str) -> AgiReply:
    """The part after ``200 ``: ``result=<raw>[ (<data>)][ endpos=<n>]``."""
    if not text.startswith("result="):
        raise AgiProtocolError(f"AGI 200 reply without result=: {text[:80]!r}")
    raw, _, rest = text[len("result=") :].partition(" ")
    data: str | None = None
    opened = rest.find("(")
    closed = rest.rfind(")")
    if opened >= 0 and closed > opened:
        data = rest[opened + 1 : closed]
        tail = rest[:opened] + " " + rest[closed + 1 :]
    else:
        tail = rest
    endpos_match = _ENDPOS.search(tail)
    return AgiReply(
        code=200,
        result=int(raw) if _INT.match(raw) else None,
        raw_result=raw,
        data=data,
        timeout=data == "timeout",
        endpos=int(endpos_match.group(1)) if endpos_match else None,
        command=command,
    )


# --- our side: the FastAGI server connection ------------------------------------------------


class AgiServerConnection:
    """The FastAGI server's half of one connection, h11 style: bytes in, events out."""

    __slots__ = (
        "_buf",
        "_command",
        "_eof",
        "_error",
        "_header_bytes",
        "_max_header",
        "_max_line",
        "_pos",
        "_scan",
        "_state",
        "_usage",
        "_variables",
    )

    def __init__(self, *, max_header_bytes: int = 16384, max_line_bytes: int = 65536) -> None:
        if max_header_bytes < 2 or max_line_bytes < 2:
            raise ValueError("limits must be at least 2 bytes")
        self._buf = bytearray()
        self._pos = 0  # first unconsumed byte
        self._scan = 0  # where the LF search resumes
        self._eof = False
        self._error: AgiProtocolError | None = None
        self._state = AgiState.AWAIT_HEADERS
        self._max_header = max_header_bytes
        self._max_line = max_line_bytes
        self._header_bytes = 0
        self._variables: list[tuple[str, str]] = []
        self._usage: list[str] | None = None  # inside a 520 block
        self._command = ""  # words of the outstanding command

    @property
    def state(self) -> AgiState:
        return self._state

    @property
    def eof(self) -> bool:
        """True once receive_data(b"") has been called."""
        return self._eof

    def _go(self, given: _Input) -> None:
        after = _TRANSITIONS.get((self._state, given))
        if after is None:
            if given is _Input.SEND:
                raise AgiStateError(f"cannot send a command in state {self._state}")
            raise AgiProtocolError(f"AGI {given} not allowed in state {self._state}")
        self._state = after

    def receive_data(self, data: bytes) -> None:
        """Append bytes read from the socket; b"" means Asterisk closed its side (EOF)."""
        if self._eof:
            if data:
                raise AgiProtocolError("AGI data received after EOF")
            return
        if not data:
            self._eof = True
            return
        if self._pos:
            del self._buf[: self._pos]
            self._scan -= self._pos
            self._pos = 0
        self._buf += data

    def send_command(self, command: AgiCommand | str) -> bytes:
        """The bytes to write for `command` (a typed command or a line without LF)."""
        if self._error is not None:
            raise self._error
        if isinstance(command, str):
            if "\n" in command:
                raise AgiEncodeError(f"an AGI command is one line: {command[:60]!r}")
            line = command
            name = command_name(parse_command(line))
        else:
            line = command.to_line()
            name = command.verb
        wire = line.encode(_ENCODING, _ERRORS) + b"\n"
        if len(wire) >= AGI_BUF_LEN:
            raise AgiEncodeError(
                f"AGI command of {len(wire)} bytes; res_agi reads at most {AGI_BUF_LEN - 1}"
            )
        self._go(_Input.SEND)
        self._command = name
        return wire

    def next_event(self) -> AgiEnvironment | AgiReply | AgiHangup | None:
        """The next event, or None when more data is needed (or the state is CLOSED)."""
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except AgiProtocolError as err:
            self._error = err
            raise

    def _take_line(self, limit: int) -> bytes | None:
        end = self._buf.find(b"\n", self._scan)
        if end < 0:
            self._scan = len(self._buf)
            if len(self._buf) - self._pos > limit:
                raise AgiProtocolError(f"AGI line longer than {limit} bytes")
            return None
        if end - self._pos > limit:
            raise AgiProtocolError(f"AGI line longer than {limit} bytes")
        line = bytes(self._buf[self._pos : end])
        self._pos = self._scan = end + 1
        return line

    def _next(self) -> AgiEnvironment | AgiReply | AgiHangup | None:
        if self._state is AgiState.CLOSED:
            return None
        if self._state is AgiState.AWAIT_HEADERS:
            return self._next_environment()
        while (raw := self._take_line(self._max_line)) is not None:
            event = self._on_line(raw.decode(_ENCODING, _ERRORS))
            if event is not None:
                return event
        if self._eof:
            if self._pos < len(self._buf):
                raise AgiProtocolError("EOF inside an AGI line")
            if self._usage is not None:
                raise AgiProtocolError("EOF inside an AGI 520 usage block")
            self._go(_Input.EOF)
        return None

    def _next_environment(self) -> AgiEnvironment | None:
        while True:
            left = self._max_header - self._header_bytes
            raw = self._take_line(left - 1)
            if raw is None:
                if self._eof:
                    raise AgiProtocolError("EOF before the end of the AGI header block")
                start = bytes(self._buf[self._pos : self._pos + 4])
                if not b"agi_".startswith(start):
                    raise AgiProtocolError(f"not an AGI header line: {start!r}...")
                return None
            self._header_bytes += len(raw) + 1
            if not raw:
                if not self._variables:
                    raise AgiProtocolError("empty AGI header block")
                self._go(_Input.HEADERS)
                return AgiEnvironment(tuple(self._variables))
            name, sep, value = raw.decode(_ENCODING, _ERRORS).partition(": ")
            if not sep or not _HEADER_NAME.match(name):
                raise AgiProtocolError(f"not an AGI header line: {raw[:80]!r}")
            self._variables.append((name, value))

    def _on_line(self, line: str) -> AgiReply | AgiHangup | None:
        if self._usage is not None:
            if line.startswith("520 "):
                usage, self._usage = tuple(self._usage), None
                return self._reply(AgiReply(code=520, usage=usage, command=self._command))
            self._usage.append(line)
            return None
        if line == "HANGUP":
            self._go(_Input.HANGUP)
            return AgiHangup()
        match = _REPLY_LINE.match(line)
        if match is None:
            raise AgiProtocolError(f"not an AGI reply line: {line[:80]!r}")
        code, dash, text = int(match.group(1)), match.group(2), match.group(3)
        if code == 100:
            self._go(_Input.TRYING)
            return None
        if dash == "-":
            if code != 520 or self._state is not AgiState.AWAIT_REPLY:
                raise AgiProtocolError(f"unexpected AGI continuation line: {line[:80]!r}")
            self._usage = []
            return None
        if code == 200:
            return self._reply(_parse_200(text, self._command))
        if code in (510, 511, 520):
            return self._reply(AgiReply(code=code, command=self._command))
        raise AgiProtocolError(f"unknown AGI reply code: {line[:80]!r}")

    def _reply(self, reply: AgiReply) -> AgiReply:
        self._go(_Input.REPLY)
        self._command = ""
        return reply


# --- the Asterisk side (used by the simulator and by tests) ---------------------------------


def encode_environment(variables: Iterable[tuple[str, str]]) -> bytes:
    """The header block: ``name: value\\n`` per variable, then the empty line."""
    out = bytearray()
    for name, value in variables:
        if "\n" in name or "\n" in value or ": " in name:
            raise AgiEncodeError(f"cannot encode AGI variable {name[:40]!r}")
        out += f"{name}: {value}\n".encode(_ENCODING, _ERRORS)
    out += b"\n"
    return bytes(out)


class AgiCommandDecoder:
    """Asterisk's reader of the script's command lines: bytes in, lines (without LF) out.

    Like res_agi, a last line without LF is still a command when the script closes. A line of
    ``max_line_bytes`` or more raises :class:`AgiProtocolError` (res_agi would cut it at 2047
    bytes and run the rest as another command; we refuse instead).
    """

    __slots__ = ("_buf", "_eof", "_error", "_max", "_pos", "_scan")

    def __init__(self, *, max_line_bytes: int = AGI_BUF_LEN) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._scan = 0
        self._eof = False
        self._max = max_line_bytes
        self._error: AgiProtocolError | None = None

    @property
    def eof(self) -> bool:
        return self._eof

    def receive_data(self, data: bytes) -> None:
        """Append bytes from the script; b"" means the script closed its side."""
        if self._eof:
            if data:
                raise AgiProtocolError("AGI data received after EOF")
            return
        if not data:
            self._eof = True
            return
        if self._pos:
            del self._buf[: self._pos]
            self._scan -= self._pos
            self._pos = 0
        self._buf += data

    def next_command(self) -> str | None:
        """The next command line without its LF, or None when more data is needed."""
        if self._error is not None:
            raise self._error
        end = self._buf.find(b"\n", self._scan)
        if end < 0:
            self._scan = len(self._buf)
            pending = len(self._buf) - self._pos
            if pending + 1 >= self._max:
                self._error = AgiProtocolError(f"AGI command line of {self._max} bytes or more")
                raise self._error
            if self._eof and pending:
                line = bytes(self._buf[self._pos :])
                self._pos = self._scan = len(self._buf)
                return line.decode(_ENCODING, _ERRORS)
            return None
        if end - self._pos + 1 >= self._max:
            self._error = AgiProtocolError(f"AGI command line of {self._max} bytes or more")
            raise self._error
        line = bytes(self._buf[self._pos : end])
        self._pos = self._scan = end + 1
        return line.decode(_ENCODING, _ERRORS)


def format_reply(
    result: int | str,
    *,
    data: str | None = None,
    endpos: int | None = None,
    timeout: bool = False,
) -> bytes:
    """A ``200`` reply exactly as res_agi writes it.

    ``format_reply(0, endpos=3404)`` is ``200 result=0 endpos=3404``; ``format_reply("",
    timeout=True)`` is ``200 result= (timeout)``; ``format_reply(1, data="x (y)")`` is
    ``200 result=1 (x (y))``. `timeout` and `data` both fill the parentheses, so only one of
    them may be given.
    """
    if timeout and data is not None:
        raise AgiEncodeError("a reply has either (timeout) or (data), not both")
    text = f"200 result={result}"
    if timeout:
        text += " (timeout)"
    elif data is not None:
        text += f" ({data})"
    if endpos is not None:
        text += f" endpos={endpos}"
    if "\n" in text:
        raise AgiEncodeError(f"an AGI reply is one line: {text[:60]!r}")
    return text.encode(_ENCODING, _ERRORS) + b"\n"


def format_usage(usage_lines: Sequence[str]) -> bytes:
    """The 520 reply: ``520-…follows:``, the usage lines, ``520 End of proper usage.``."""
    if not usage_lines:
        return f"{USAGE_NONE}\n".encode(_ENCODING)
    for line in usage_lines:
        if "\n" in line or line.startswith("520 "):
            raise AgiEncodeError(f"usage line would break the 520 block: {line[:60]!r}")
    body = "".join(f"{line}\n" for line in usage_lines)
    return f"{USAGE_FIRST}\n{body}{USAGE_LAST}\n".encode(_ENCODING, _ERRORS)
