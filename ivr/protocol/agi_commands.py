"""Typed FastAGI commands: command lines quoted the way res_agi splits them, and back again.

Theory of operation
-------------------

Asterisk reads one command per line and splits it with ``parse_args()`` in ``res/res_agi.c``
(:func:`parse_command` is a line-for-line port):

* words are separated by runs of spaces or tabs;
* ``"`` toggles quoting and is dropped; a quote that opens right after whitespace starts a new
  word even if it stays empty (``STREAM FILE beep ""`` has four words, the last one empty);
  a quote in the middle of a word only toggles (``ab"c d"e`` is the one word ``abc de``);
* ``\\`` makes the next character literal (``\\"``, ``\\\\``, ``\\ ``) and is dropped; a
  backslash before any other character is simply dropped;
* at most ``MAX_ARGS - 1`` (127) words are kept, later ones are dropped.

:func:`quote` is the inverse used to build lines: a word is written bare unless it is empty or
holds a space, tab, ``"`` or ``\\``; then it is put in double quotes with ``"`` and ``\\``
backslash-escaped. Escape-digit words are always quoted, as in the traces
(``STREAM FILE beep "12#"``, ``SAY DIGITS 123 ""``, section 4.2 of
``tests/fixtures/asterisk-traces/README.md``). A line cannot carry LF, CR or NUL (the line ends
at LF, and res_agi works on C strings), so such a value raises :class:`AgiEncodeError`.

:func:`command_from_argv` maps a split line back to a typed command, matching the command words
case-insensitively like res_agi's ``find_command()`` and applying each ``handle_*()``
function's argument count and number rules (``sscanf("%d")`` where Asterisk uses it, ``atoi``
where it uses that). Unknown words raise :class:`AgiUnknownCommand` (res_agi answers ``510``);
wrong arguments raise :class:`AgiCommandSyntaxError` (res_agi answers ``520`` with the usage).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from ivr.errors import IvrError

__all__ = [
    "AGI_BUF_LEN",
    "MAX_ARGS",
    "AgiCommand",
    "AgiCommandError",
    "AgiCommandSyntaxError",
    "AgiEncodeError",
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
    "parse_command",
    "quote",
]

MAX_ARGS = 128  # res_agi's argv size; one slot is the NULL terminator
AGI_BUF_LEN = 2048  # res_agi's command buffer: a line (with its LF) must fit in 2047 bytes

_SPECIAL = frozenset(' \t"\\')
_FORBIDDEN = ("\n", "\r", "\x00")
_SCANF_INT = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")


class AgiEncodeError(IvrError):
    """A value cannot be written on the AGI wire (LF, CR or NUL in it, or a line too long)."""

    error_id = "agi-encode-error"


class AgiCommandError(IvrError):
    """A command line does not make a valid AGI command."""

    error_id = "agi-command-error"


class AgiUnknownCommand(AgiCommandError):
    """No AGI command has these words (res_agi replies 510)."""

    error_id = "agi-unknown-command"


class AgiCommandSyntaxError(AgiCommandError):
    """A known command with wrong arguments (res_agi replies 520 and the usage text)."""

    error_id = "agi-command-syntax"


# --- splitting and quoting ------------------------------------------------------------------


def parse_command(line: str) -> tuple[str, ...]:
    """Split one command line (without its LF) into words exactly as res_agi's parse_args()."""
    args: list[str] = []
    word: list[str] = []
    in_word = False
    quoted = escaped = False
    whitespace = True

    def start_word() -> bool:
        nonlocal in_word, word
        if len(args) + in_word >= MAX_ARGS - 1:
            return False  # "Too many arguments, truncating"
        if in_word:
            args.append("".join(word))
        word = []
        in_word = True
        return True

    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and whitespace and start_word():
                whitespace = False
            continue
        if ch in " \t" and not quoted and not escaped:
            whitespace = True
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if whitespace:
            if not start_word():
                continue
            whitespace = False
        word.append(ch)
        escaped = False
    if in_word:
        args.append("".join(word))
    return tuple(args)


def _check(value: str) -> str:
    for bad in _FORBIDDEN:
        if bad in value:
            raise AgiEncodeError(f"an AGI line cannot contain {bad!r}: {value[:60]!r}")
    return value


def quote(word: str, *, force: bool = False) -> str:
    """One word for a command line: bare when safe, else double-quoted with escapes."""
    _check(word)
    if not force and word and not any(ch in _SPECIAL for ch in word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _line(verb: str, *words: str) -> str:
    return " ".join((verb, *words))


def _digits(escape_digits: str) -> str:
    return quote(escape_digits, force=True)


# --- the typed commands ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """``ANSWER``: answer the channel; ``200 result=0`` (``-1`` on failure)."""

    verb: ClassVar[str] = "ANSWER"

    def to_line(self) -> str:
        return self.verb


@dataclass(frozen=True, slots=True)
class StreamFile:
    """``STREAM FILE``: play a prompt; result is the ASCII code of an escape digit, endpos set."""

    filename: str
    escape_digits: str = ""
    offset: int | None = None
    verb: ClassVar[str] = "STREAM FILE"

    def to_line(self) -> str:
        words = [quote(self.filename), _digits(self.escape_digits)]
        if self.offset is not None:
            words.append(str(self.offset))
        return _line(self.verb, *words)


@dataclass(frozen=True, slots=True)
class GetOption:
    """``GET OPTION``: STREAM FILE, then wait up to timeout_ms for one of the escape digits."""

    filename: str
    escape_digits: str
    timeout_ms: int | None = None
    verb: ClassVar[str] = "GET OPTION"

    def to_line(self) -> str:
        words = [quote(self.filename), _digits(self.escape_digits)]
        if self.timeout_ms is not None:
            words.append(str(self.timeout_ms))
        return _line(self.verb, *words)


@dataclass(frozen=True, slots=True)
class GetData:
    """``GET DATA``: prompt and collect digits (``#`` ends); the digits are the result text.

    ``max_digits`` without ``timeout_ms`` writes timeout ``0``, which res_agi reads as "the
    channel's default".
    """

    filename: str
    timeout_ms: int | None = None
    max_digits: int | None = None
    verb: ClassVar[str] = "GET DATA"

    def to_line(self) -> str:
        words = [quote(self.filename)]
        if self.timeout_ms is not None or self.max_digits is not None:
            words.append(str(self.timeout_ms or 0))
        if self.max_digits is not None:
            words.append(str(self.max_digits))
        return _line(self.verb, *words)


@dataclass(frozen=True, slots=True)
class WaitForDigit:
    """``WAIT FOR DIGIT``: result is the ASCII code of the digit, 0 on timeout (-1: forever)."""

    timeout_ms: int
    verb: ClassVar[str] = "WAIT FOR DIGIT"

    def to_line(self) -> str:
        return _line(self.verb, str(self.timeout_ms))


@dataclass(frozen=True, slots=True)
class SayDigits:
    """``SAY DIGITS``: say a digit string, interruptible by the escape digits."""

    digits: str
    escape_digits: str = ""
    verb: ClassVar[str] = "SAY DIGITS"

    def to_line(self) -> str:
        return _line(self.verb, quote(self.digits), _digits(self.escape_digits))


@dataclass(frozen=True, slots=True)
class SayNumber:
    """``SAY NUMBER``: say a number, interruptible by the escape digits."""

    number: int
    escape_digits: str = ""
    verb: ClassVar[str] = "SAY NUMBER"

    def to_line(self) -> str:
        return _line(self.verb, str(self.number), _digits(self.escape_digits))


@dataclass(frozen=True, slots=True)
class SetVariable:
    """``SET VARIABLE``: set a channel variable; ``200 result=1``."""

    name: str
    value: str
    verb: ClassVar[str] = "SET VARIABLE"

    def to_line(self) -> str:
        return _line(self.verb, quote(self.name), quote(self.value))


@dataclass(frozen=True, slots=True)
class GetVariable:
    """``GET VARIABLE``: ``200 result=1 (value)``, or ``200 result=0`` when unset."""

    name: str
    verb: ClassVar[str] = "GET VARIABLE"

    def to_line(self) -> str:
        return _line(self.verb, quote(self.name))


@dataclass(frozen=True, slots=True)
class GetFullVariable:
    """``GET FULL VARIABLE``: substitute an expression, optionally on another channel."""

    expression: str
    channel: str | None = None
    verb: ClassVar[str] = "GET FULL VARIABLE"

    def to_line(self) -> str:
        words = [quote(self.expression)]
        if self.channel is not None:
            words.append(quote(self.channel))
        return _line(self.verb, *words)


@dataclass(frozen=True, slots=True)
class Exec:
    """``EXEC``: run a dialplan application; result is its return value (-2: no such app).

    res_agi passes only the third word as the options, so options are one (quoted) word.
    """

    application: str
    options: str = ""
    verb: ClassVar[str] = "EXEC"

    def to_line(self) -> str:
        words = [quote(self.application)]
        if self.options:
            words.append(quote(self.options))
        return _line(self.verb, *words)


@dataclass(frozen=True, slots=True)
class RecordFile:
    """``RECORD FILE``: record until an escape digit, the timeout or silence_s of silence."""

    filename: str
    format: str
    escape_digits: str
    timeout_ms: int
    offset: int | None = None
    beep: bool = False
    silence_s: int | None = None
    verb: ClassVar[str] = "RECORD FILE"

    def to_line(self) -> str:
        words = [
            quote(self.filename),
            quote(self.format),
            _digits(self.escape_digits),
            str(self.timeout_ms),
        ]
        if self.offset is not None:
            words.append(str(self.offset))
        if self.beep:
            words.append("BEEP")
        if self.silence_s is not None:
            words.append(f"s={self.silence_s}")
        return _line(self.verb, *words)


@dataclass(frozen=True, slots=True)
class ChannelStatus:
    """``CHANNEL STATUS``: result is the channel state (6 = Up), -1 for an unknown channel."""

    channel: str | None = None
    verb: ClassVar[str] = "CHANNEL STATUS"

    def to_line(self) -> str:
        if self.channel is None:
            return self.verb
        return _line(self.verb, quote(self.channel))


@dataclass(frozen=True, slots=True)
class Verbose:
    """``VERBOSE``: log a message on the Asterisk console at a verbosity level."""

    message: str
    level: int = 1
    verb: ClassVar[str] = "VERBOSE"

    def to_line(self) -> str:
        return _line(self.verb, quote(self.message), str(self.level))


@dataclass(frozen=True, slots=True)
class Hangup:
    """``HANGUP``: hang up this (or the named) channel; an unsolicited ``HANGUP`` line follows."""

    channel: str | None = None
    verb: ClassVar[str] = "HANGUP"

    def to_line(self) -> str:
        if self.channel is None:
            return self.verb
        return _line(self.verb, quote(self.channel))


@dataclass(frozen=True, slots=True)
class SetMusic:
    """``SET MUSIC ON [class]`` / ``SET MUSIC OFF``: start or stop music on hold."""

    on: bool
    moh_class: str | None = None
    verb: ClassVar[str] = "SET MUSIC"

    def to_line(self) -> str:
        if not self.on:
            return _line(self.verb, "OFF")
        if self.moh_class is None:
            return _line(self.verb, "ON")
        return _line(self.verb, "ON", quote(self.moh_class))


@dataclass(frozen=True, slots=True)
class Noop:
    """``NOOP``: does nothing; ``200 result=0``. Works on a dead channel too."""

    verb: ClassVar[str] = "NOOP"

    def to_line(self) -> str:
        return self.verb


AgiCommand: TypeAlias = (
    Answer
    | StreamFile
    | GetOption
    | GetData
    | WaitForDigit
    | SayDigits
    | SayNumber
    | SetVariable
    | GetVariable
    | GetFullVariable
    | Exec
    | RecordFile
    | ChannelStatus
    | Verbose
    | Hangup
    | SetMusic
    | Noop
)


# --- argv -> typed command (the Asterisk side) ----------------------------------------------


def _scan_int(word: str) -> int | None:
    """C ``sscanf(word, "%30d")``: leading whitespace, sign, digits; None if no number."""
    match = _SCANF_INT.match(word[:30])
    return int(match.group(1)) if match else None


def _int_arg(word: str, verb: str) -> int:
    value = _scan_int(word)
    if value is None:
        raise AgiCommandSyntaxError(f"{verb}: {word!r} is not a number")
    return value


def _atoi(word: str) -> int:
    """C ``atoi``: like sscanf %d but 0 when there is no number."""
    value = _scan_int(word)
    return 0 if value is None else value


def _arity(verb: str, args: Sequence[str], low: int, high: int | None) -> None:
    if len(args) < low or (high is not None and len(args) > high):
        raise AgiCommandSyntaxError(f"{verb}: wrong number of arguments ({len(args)})")


def _answer(args: Sequence[str]) -> AgiCommand:
    return Answer()


def _stream_file(args: Sequence[str]) -> AgiCommand:
    _arity("STREAM FILE", args, 2, 3)
    offset = _int_arg(args[2], "STREAM FILE") if len(args) > 2 else None
    return StreamFile(args[0], args[1], offset)


def _get_option(args: Sequence[str]) -> AgiCommand:
    _arity("GET OPTION", args, 2, 3)
    return GetOption(args[0], args[1], _atoi(args[2]) if len(args) > 2 else None)


def _get_data(args: Sequence[str]) -> AgiCommand:
    _arity("GET DATA", args, 1, None)
    timeout = _atoi(args[1]) if len(args) > 1 else None
    max_digits = _atoi(args[2]) if len(args) > 2 else None
    return GetData(args[0], timeout, max_digits)


def _wait_for_digit(args: Sequence[str]) -> AgiCommand:
    _arity("WAIT FOR DIGIT", args, 1, 1)
    return WaitForDigit(_int_arg(args[0], "WAIT FOR DIGIT"))


def _say_digits(args: Sequence[str]) -> AgiCommand:
    _arity("SAY DIGITS", args, 2, 2)
    _int_arg(args[0], "SAY DIGITS")  # res_agi insists the digit string starts as a number
    return SayDigits(args[0], args[1])


def _say_number(args: Sequence[str]) -> AgiCommand:
    _arity("SAY NUMBER", args, 2, 3)  # the optional gender word is not modelled
    return SayNumber(_int_arg(args[0], "SAY NUMBER"), args[1])


def _set_variable(args: Sequence[str]) -> AgiCommand:
    _arity("SET VARIABLE", args, 2, 2)
    return SetVariable(args[0], args[1])


def _get_variable(args: Sequence[str]) -> AgiCommand:
    _arity("GET VARIABLE", args, 1, 1)
    return GetVariable(args[0])


def _get_full_variable(args: Sequence[str]) -> AgiCommand:
    _arity("GET FULL VARIABLE", args, 1, 2)
    return GetFullVariable(args[0], args[1] if len(args) > 1 else None)


def _exec(args: Sequence[str]) -> AgiCommand:
    _arity("EXEC", args, 1, None)  # words after the options are ignored, as in res_agi
    return Exec(args[0], args[1] if len(args) > 1 else "")


def _record_file(args: Sequence[str]) -> AgiCommand:
    _arity("RECORD FILE", args, 4, None)
    timeout = _int_arg(args[3], "RECORD FILE")
    extra = list(args[4:])
    silence: int | None = None
    for word in extra[:3]:  # strchr(argv[6..8], 's'), then "s=<seconds>"
        at = word.find("s")
        if at >= 0:
            text = word[at:]
            if len(text) > 2 and text.startswith("s="):
                seconds = _atoi(text[2:])
                silence = seconds if seconds > 0 else None
            break
    offset = _scan_int(extra[0]) if extra else None
    beep = bool(extra) and offset is None and "=" not in extra[0]
    beep = beep or (len(extra) > 1 and "=" not in extra[1])
    return RecordFile(args[0], args[1], args[2], timeout, offset, beep, silence)


def _channel_status(args: Sequence[str]) -> AgiCommand:
    _arity("CHANNEL STATUS", args, 0, 1)
    return ChannelStatus(args[0] if args else None)


def _verbose(args: Sequence[str]) -> AgiCommand:
    _arity("VERBOSE", args, 1, None)
    level = _scan_int(args[1]) if len(args) > 1 else None
    return Verbose(args[0], level or 0)


def _hangup(args: Sequence[str]) -> AgiCommand:
    _arity("HANGUP", args, 0, 1)
    return Hangup(args[0] if args else None)


def _set_music(args: Sequence[str]) -> AgiCommand:
    _arity("SET MUSIC", args, 1, None)
    mode = args[0].lower()
    if mode.startswith("on"):
        return SetMusic(True, args[1] if len(args) > 1 else None)
    if mode.startswith("off"):
        return SetMusic(False)
    # res_agi replies 200 and does nothing here; a typed command cannot say "nothing".
    raise AgiCommandSyntaxError(f"SET MUSIC: {args[0]!r} is neither ON nor OFF")


def _noop(args: Sequence[str]) -> AgiCommand:
    return Noop()


_PARSERS: dict[tuple[str, ...], Callable[[Sequence[str]], AgiCommand]] = {
    ("answer",): _answer,
    ("stream", "file"): _stream_file,
    ("get", "option"): _get_option,
    ("get", "data"): _get_data,
    ("wait", "for", "digit"): _wait_for_digit,
    ("say", "digits"): _say_digits,
    ("say", "number"): _say_number,
    ("set", "variable"): _set_variable,
    ("get", "variable"): _get_variable,
    ("get", "full", "variable"): _get_full_variable,
    ("exec",): _exec,
    ("record", "file"): _record_file,
    ("channel", "status"): _channel_status,
    ("verbose",): _verbose,
    ("hangup",): _hangup,
    ("set", "music"): _set_music,
    ("noop",): _noop,
}


def _match(argv: Sequence[str]) -> tuple[str, ...] | None:
    lowered = tuple(word.lower() for word in argv[:3])
    for size in (3, 2, 1):
        if len(lowered) >= size and lowered[:size] in _PARSERS:
            return lowered[:size]
    return None


def command_name(argv: Sequence[str]) -> str:
    """The command words in upper case (``"GET DATA"``), or the first word if unknown."""
    words = _match(argv)
    if words is not None:
        return " ".join(words).upper()
    return argv[0].upper() if argv else ""


def command_from_argv(argv: Sequence[str]) -> AgiCommand:
    """The typed command for a split line; AgiUnknownCommand or AgiCommandSyntaxError if none."""
    words = _match(argv)
    if words is None:
        raise AgiUnknownCommand(f"invalid or unknown command: {' '.join(argv)[:80]!r}")
    return _PARSERS[words](argv[len(words) :])
