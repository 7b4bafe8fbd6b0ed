"""Unit tests of the sans-I/O FastAGI codec (ivr.protocol.agi) against the recorded traces."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.errors import IvrError
from ivr.protocol.agi import (
    HANGUP_LINE,
    REPLY_DEAD,
    REPLY_INVALID,
    AgiCommand,
    AgiCommandDecoder,
    AgiCommandSyntaxError,
    AgiEncodeError,
    AgiEnvironment,
    AgiHangup,
    AgiProtocolError,
    AgiReply,
    AgiServerConnection,
    AgiState,
    AgiStateError,
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
    encode_environment,
    format_reply,
    format_usage,
    parse_command,
    quote,
)
from tests.traces import load, stream, trace_names

AGI_TRACES = trace_names(".agi.jsonl")
Event = AgiEnvironment | AgiReply | AgiHangup
Rechunk = Callable[[list[bytes]], list[bytes]]


def _file(name: str) -> str:
    return f"{name}.agi.jsonl"


@dataclass(frozen=True)
class Script:
    """A trace as a conversation: the header chunks, then each command and the chunks after it."""

    header: list[bytes]
    turns: list[tuple[bytes, list[bytes]]]


def script(name: str) -> Script:
    header: list[bytes] = []
    turns: list[tuple[bytes, list[bytes]]] = []
    for record in load(_file(name)):
        if record.dir == "out":
            turns.append((record.data, []))
        elif record.dir == "in" and record.data:
            (turns[-1][1] if turns else header).append(record.data)
    return Script(header, turns)


def drain(conn: AgiServerConnection, into: list[Event]) -> None:
    while (event := conn.next_event()) is not None:
        into.append(event)


def replay(name: str, rechunk: Rechunk = list) -> list[tuple[bytes | None, list[Event]]]:
    """Feed a trace turn by turn; return (command sent, events read after it) per turn."""
    conn = AgiServerConnection()
    plan = script(name)
    first: list[Event] = []
    for part in rechunk(plan.header):
        conn.receive_data(part)
        drain(conn, first)
    out: list[tuple[bytes | None, list[Event]]] = [(None, first)]
    for line, chunks in plan.turns:
        assert conn.state is AgiState.IDLE
        assert conn.send_command(line.decode()[:-1]) == line
        events: list[Event] = []
        for part in rechunk(chunks):
            conn.receive_data(part)
            drain(conn, events)
        out.append((line, events))
    conn.receive_data(b"")
    drain(conn, out[-1][1])
    assert conn.state is AgiState.CLOSED
    return out


def flat(turns: list[tuple[bytes | None, list[Event]]]) -> list[Event]:
    return [event for _, events in turns for event in events]


def replay_whole_stream_eagerly(name: str) -> list[Event]:
    """Feed the whole "in" stream at once; send each next command as soon as the codec is idle."""
    commands = [line for line, _ in script(name).turns]
    conn = AgiServerConnection()
    conn.receive_data(stream(_file(name), "in"))
    conn.receive_data(b"")
    events: list[Event] = []
    while True:
        if conn.state is AgiState.IDLE and commands:
            conn.send_command(commands.pop(0).decode()[:-1])
        event = conn.next_event()
        if event is None:
            break
        events.append(event)
    assert not commands
    assert conn.state is AgiState.CLOSED
    return events


def replies(name: str) -> list[tuple[str, AgiReply, list[Event]]]:
    """(command line, its reply, the events read before the reply in that turn) per command."""
    out = []
    for line, events in replay(name)[1:]:
        assert line is not None
        found = [e for e in events if isinstance(e, AgiReply)]
        assert len(found) == 1, (line, events)
        before = events[: events.index(found[0])]
        out.append((line.decode()[:-1], found[0], before))
    return out


def reply_for(name: str, command: str) -> tuple[AgiReply, list[Event]]:
    """The reply to the last occurrence of `command` in the trace."""
    for line, reply, before in reversed(replies(name)):
        if line == command:
            return reply, before
    raise AssertionError(f"{command!r} not in {name}")


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in pairwise(points) if b > a]


def bytewise(chunks: list[bytes]) -> list[bytes]:
    data = b"".join(chunks)
    return [data[i : i + 1] for i in range(len(data))]


def whole(chunks: list[bytes]) -> list[bytes]:
    return [b"".join(chunks)] if chunks else []


def reencode(event: Event) -> bytes:
    if isinstance(event, AgiEnvironment):
        return encode_environment(event.variables)
    if isinstance(event, AgiHangup):
        return HANGUP_LINE
    if event.code == 510:
        return REPLY_INVALID
    if event.code == 511:
        return REPLY_DEAD
    if event.code == 520:
        return format_usage(event.usage)
    return format_reply(
        event.raw_result,
        data=None if event.timeout else event.data,
        endpos=event.endpos,
        timeout=event.timeout,
    )


# --- the recorded traces ------------------------------------------------------------------


@pytest.mark.parametrize("name", AGI_TRACES)
def test_every_trace_replays_to_one_environment_one_reply_per_command_and_its_hangups(
    name: str,
) -> None:
    turns = replay(name)
    events = flat(turns)
    data = stream(_file(name), "in")

    assert isinstance(events[0], AgiEnvironment)
    assert sum(isinstance(e, AgiEnvironment) for e in events) == 1
    assert [len([e for e in evs if isinstance(e, AgiReply)]) for _, evs in turns[1:]] == [1] * (
        len(turns) - 1
    )
    assert sum(isinstance(e, AgiHangup) for e in events) == data.count(HANGUP_LINE)
    assert isinstance(events[-1], AgiHangup), "every session ends with Asterisk's HANGUP line"


@pytest.mark.parametrize("name", AGI_TRACES)
@pytest.mark.parametrize("rechunk", [whole, bytewise], ids=["whole", "byte-by-byte"])
def test_given_any_fixed_chunking_when_replayed_then_events_equal_the_recorded_reads(
    name: str, rechunk: Rechunk
) -> None:
    assert replay(name, rechunk) == replay(name)


@pytest.mark.parametrize("name", AGI_TRACES)
def test_given_the_whole_stream_at_once_when_commands_sent_eagerly_then_same_events(
    name: str,
) -> None:
    assert replay_whole_stream_eagerly(name) == flat(replay(name))


@pytest.mark.parametrize("name", AGI_TRACES)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_given_random_chunkings_when_replayed_then_same_events(name: str, data: Any) -> None:
    def rechunk(chunks: list[bytes]) -> list[bytes]:
        joined = b"".join(chunks)
        if len(joined) < 2:
            return chunks
        cuts = data.draw(st.lists(st.integers(1, len(joined) - 1), max_size=8))
        return split_at(joined, cuts)

    assert replay(name, rechunk) == replay(name)


@pytest.mark.parametrize("name", AGI_TRACES)
def test_reencoding_every_event_reproduces_the_recorded_in_stream_byte_for_byte(name: str) -> None:
    events = flat(replay(name))
    assert b"".join(reencode(e) for e in events) == stream(_file(name), "in")


@pytest.mark.parametrize("name", AGI_TRACES)
def test_encode_environment_reproduces_the_recorded_header_block(name: str) -> None:
    data = stream(_file(name), "in")
    block = data[: data.index(b"\n\n") + 2]
    env = flat(replay(name))[0]
    assert isinstance(env, AgiEnvironment)
    assert encode_environment(env.variables) == block
    naive = [line.split(": ", 1) for line in block.decode().split("\n")[:-2]]
    assert [list(pair) for pair in env.variables] == naive


def test_environment_accessors_read_the_dtmf_menu_header_block() -> None:
    env = flat(replay("ivr-dtmf-menu"))[0]
    assert isinstance(env, AgiEnvironment)
    assert env.network_script == "ivr/main"
    assert env.script_path == "ivr/main"
    assert dict(env.params) == {}
    assert env.channel == "Local/main@trace-ivr-00000000;2"
    assert env.unique_id == "1795331282.1"
    assert env.caller_id == "+15551230001"
    assert env.caller_id_name == "Alice"
    assert (env.context, env.extension, env.priority, env.language) == (
        "trace-ivr",
        "main",
        "2",
        "en",
    )
    assert env.args == ("arg1", "arg2")
    assert env.get("accountcode", "missing") == "" == env.get("agi_accountcode", "missing")
    assert env.get("no_such_thing", "missing") == "missing"
    assert env.variables[0] == ("agi_network", "yes")


def test_environment_keeps_the_query_string_and_exposes_it_as_params() -> None:
    env = flat(replay("agent-dial"))[0]
    assert isinstance(env, AgiEnvironment)
    assert env.network_script == "ivr/agent?queue=support"
    assert env.script_path == "ivr/agent"
    assert dict(env.params) == {"queue": "support"}
    assert env.args == ("Local/1001@trace-agents",)


# --- the reply table of README section 4.2 ------------------------------------------------

REPLY_TABLE: list[tuple[str, str, dict[str, object]]] = [
    ("ivr-dtmf-menu", "ANSWER", {"code": 200, "result": 0}),
    ("ivr-dtmf-menu", 'STREAM FILE beep "12#"', {"result": 0, "endpos": 3404, "digits": ""}),
    (
        "ivr-dtmf-menu",
        'STREAM FILE demo-congrats "0123456789*#"',
        {"result": 53, "endpos": 8160, "digits": "5", "data": None},
    ),
    ("ivr-missing-prompt", 'STREAM FILE no-such-prompt ""', {"result": -1, "endpos": 0}),
    ("ivr-dtmf-menu", 'GET OPTION beep "123" 3000', {"result": 50, "digits": "2", "endpos": 3404}),
    ("ivr-dtmf-menu", 'GET OPTION beep "123" 1000', {"result": 0, "digits": ""}),
    ("ivr-dtmf-menu", "GET DATA beep 5000 1", {"result": 1, "digits": "1", "timeout": False}),
    (
        "ivr-dtmf-menu",
        "GET DATA beep 2000 1",
        {"result": None, "raw_result": "", "timeout": True, "digits": ""},
    ),
    ("ivr-dtmf-menu", "GET DATA beep 8000 4", {"result": 42, "digits": "42"}),
    ("ivr-dtmf-menu", "GET DATA beep 3000 4", {"result": 7, "timeout": True, "digits": "7"}),
    ("ivr-missing-prompt", "GET DATA no-such-prompt 1500 1", {"result": -1, "digits": ""}),
    ("ivr-caller-hangup", "GET DATA beep 10000 4", {"result": -1, "digits": ""}),
    ("ivr-dtmf-menu", "WAIT FOR DIGIT 5000", {"result": 42, "digits": "*"}),
    ("ivr-dtmf-menu", "WAIT FOR DIGIT 1000", {"result": 0, "digits": ""}),
    ("ivr-dtmf-menu", 'SAY DIGITS 123 ""', {"result": 0}),
    ("ivr-dtmf-menu", 'SAY NUMBER 42 ""', {"result": 0}),
    ("ivr-dtmf-menu", "SET MUSIC ON default", {"result": 0}),
    ("ivr-dtmf-menu", "SET VARIABLE IVR_CHOICE 1", {"result": 1}),
    ("ivr-dtmf-menu", "GET VARIABLE IVR_CHOICE", {"result": 1, "data": "1"}),
    ("ivr-dtmf-menu", "GET VARIABLE GREETING", {"result": 1, "data": "hello (world) x"}),
    ("ivr-dtmf-menu", "GET VARIABLE NO_SUCH_VAR", {"result": 0, "data": None}),
    ("ivr-dtmf-menu", "GET FULL VARIABLE ${NO_SUCH_VAR}", {"result": 1, "data": ""}),
    (
        "ivr-dtmf-menu",
        'GET FULL VARIABLE "${CALLERID(name)} on ${CHANNEL}"',
        {"result": 1, "data": "Alice on Local/main@trace-ivr-00000000;2"},
    ),
    ("ivr-dtmf-menu", "CHANNEL STATUS", {"result": 6}),
    ("ivr-dtmf-menu", "CHANNEL STATUS Local/nosuch@nowhere-00000099;1", {"result": -1}),
    ("ivr-dtmf-menu", 'VERBOSE "trace ivr verbose message" 1', {"result": 1}),
    ("ivr-dtmf-menu", "EXEC Playback beep", {"result": 0}),
    ("ivr-dtmf-menu", "EXEC NoSuchApplication foo", {"result": -2}),
    ("agent-dial", "EXEC Dial Local/1001@trace-agents,20", {"result": -1}),
    ("agent-dial-busy", "EXEC Dial Local/1003@trace-agents,20", {"result": 0}),
    ("agent-dial-noanswer", "GET VARIABLE DIALEDPEERNAME", {"result": 1, "data": ""}),
    ("ivr-agi-hangup", "HANGUP", {"result": 1}),
    ("ivr-dtmf-menu", "NOOP", {"result": 0}),
    ("ivr-dtmf-menu", "FOO BAR", {"code": 510, "result": None, "digits": ""}),
    (
        "ivr-dtmf-menu",
        "GET DATA",
        {
            "code": 520,
            "usage": (
                "Stream the given <replaceable>file</replaceable>, and receive DTMF data.",
                "Returns the digits received from the channel at the other end.",
            ),
        },
    ),
    ("ivr-caller-hangup", 'STREAM FILE beep ""', {"code": 511}),
    ("ivr-caller-hangup", "CHANNEL STATUS", {"code": 511}),
    ("ivr-caller-hangup", "GET VARIABLE IVR_STAGE", {"result": 1, "data": "menu"}),
    ("ivr-agi-hangup", 'STREAM FILE beep ""', {"code": 511}),
]


@pytest.mark.parametrize(
    ("name", "command", "expected"), REPLY_TABLE, ids=[f"{n}:{c}" for n, c, _ in REPLY_TABLE]
)
def test_reply_table_of_readme_section_4_2(
    name: str, command: str, expected: dict[str, object]
) -> None:
    reply, _ = reply_for(name, command)
    got = {key: reply.digits() if key == "digits" else getattr(reply, key) for key in expected}
    assert got == expected


def test_given_hangup_line_before_reply_then_hangup_event_comes_first_and_reply_still_read() -> (
    None
):
    reply, before = reply_for("audiosocket-caller-hangup", "CHANNEL STATUS")
    assert before == [AgiHangup()]
    assert reply.code == 511


@pytest.mark.parametrize(
    ("name", "command"),
    [("ivr-caller-hangup", "GET DATA beep 10000 4"), ("ivr-agi-hangup", "HANGUP")],
)
def test_given_hangup_line_right_after_a_reply_then_it_is_an_event_not_the_next_reply(
    name: str, command: str
) -> None:
    turns = dict((line, events) for line, events in replay(name)[1:] if line is not None)
    events = turns[f"{command}\n".encode()]
    assert [type(e) for e in events] == [AgiReply, AgiHangup]


def test_reply_command_is_the_command_words_of_the_outstanding_command() -> None:
    assert [reply.command for _, reply, _ in replies("agent-dial")] == [
        "ANSWER",
        "STREAM FILE",
        "EXEC",
        "GET VARIABLE",
        "GET VARIABLE",
        "GET VARIABLE",
        "GET VARIABLE",
        "CHANNEL STATUS",
    ]


# --- other reply shapes -------------------------------------------------------------------


def connected(**limits: int) -> AgiServerConnection:
    conn = AgiServerConnection(**limits)
    conn.receive_data(encode_environment([("agi_network", "yes"), ("agi_uniqueid", "1.1")]))
    assert isinstance(conn.next_event(), AgiEnvironment)
    return conn


def answer_with(conn: AgiServerConnection, data: bytes, command: AgiCommand | str = "NOOP") -> Any:
    conn.send_command(command)
    conn.receive_data(data)
    return conn.next_event()


def test_100_trying_lines_of_older_asterisks_are_skipped() -> None:
    conn = connected()
    reply = answer_with(conn, b"100 result=0 Trying...\n200 result=0\n")
    assert reply == AgiReply(200, 0, "0", command="NOOP")
    assert conn.state is AgiState.IDLE


def test_single_line_520_without_usage_text_is_a_reply_with_no_usage() -> None:
    data = format_usage([])
    assert data == b"520 Invalid command syntax.  Proper usage not available.\n"
    reply = answer_with(connected(), data, "GET DATA")
    assert (reply.code, reply.usage) == (520, ())


def test_record_file_reply_with_data_and_endpos() -> None:
    reply = answer_with(
        connected(), b"200 result=35 (dtmf) endpos=16000\n", RecordFile("m", "wav", "#", 5000)
    )
    assert (reply.result, reply.data, reply.endpos, reply.digits()) == (35, "dtmf", 16000, "#")
    assert format_reply(35, data="dtmf", endpos=16000) == b"200 result=35 (dtmf) endpos=16000\n"
    timed_out = format_reply(0, timeout=True, endpos=800)
    assert timed_out == b"200 result=0 (timeout) endpos=800\n"


def test_get_data_digits_keep_leading_zeros_and_star_and_hash_digits() -> None:
    assert answer_with(connected(), b"200 result=007\n", GetData("x")).digits() == "007"
    reply = answer_with(connected(), b"200 result=*12 (timeout)\n", GetData("x"))
    assert (reply.result, reply.digits(), reply.timeout) == (None, "*12", True)


def test_format_reply_builds_the_exact_lines_of_the_readme() -> None:
    assert format_reply("", timeout=True) == b"200 result= (timeout)\n"
    assert format_reply(7, timeout=True) == b"200 result=7 (timeout)\n"
    assert format_reply(1, data="hello (world) x") == b"200 result=1 (hello (world) x)\n"
    assert format_reply(53, endpos=8160) == b"200 result=53 endpos=8160\n"
    assert format_reply(1, data="") == b"200 result=1 ()\n"
    with pytest.raises(AgiEncodeError):
        format_reply(1, data="x", timeout=True)
    with pytest.raises(AgiEncodeError):
        format_reply(1, data="two\nlines")


# --- the state table ----------------------------------------------------------------------


def _feed(conn: AgiServerConnection, data: bytes) -> object:
    conn.receive_data(data)
    return conn.next_event()


INPUTS: dict[str, Callable[[AgiServerConnection], object]] = {
    "header block": lambda c: _feed(c, b"agi_network: yes\n\n"),
    "send_command": lambda c: c.send_command(Noop()),
    "HANGUP line": lambda c: _feed(c, b"HANGUP\n"),
    "100 Trying": lambda c: _feed(c, b"100 Trying\n"),
    "reply": lambda c: _feed(c, b"200 result=0\n"),
    "EOF": lambda c: _feed(c, b""),
}
ALLOWED = {
    (AgiState.AWAIT_HEADERS, "header block"): AgiState.IDLE,
    (AgiState.IDLE, "send_command"): AgiState.AWAIT_REPLY,
    (AgiState.IDLE, "HANGUP line"): AgiState.IDLE,
    (AgiState.IDLE, "EOF"): AgiState.CLOSED,
    (AgiState.AWAIT_REPLY, "100 Trying"): AgiState.AWAIT_REPLY,
    (AgiState.AWAIT_REPLY, "HANGUP line"): AgiState.AWAIT_REPLY,
    (AgiState.AWAIT_REPLY, "reply"): AgiState.IDLE,
    (AgiState.AWAIT_REPLY, "EOF"): AgiState.CLOSED,
    (AgiState.CLOSED, "EOF"): AgiState.CLOSED,  # a second EOF is harmless
}


def in_state(state: AgiState) -> AgiServerConnection:
    conn = AgiServerConnection()
    if state is AgiState.AWAIT_HEADERS:
        return conn
    conn = connected()
    if state is AgiState.AWAIT_REPLY:
        conn.send_command(Noop())
    if state is AgiState.CLOSED:
        conn.receive_data(b"")
        assert conn.next_event() is None
    assert conn.state is state
    return conn


@pytest.mark.parametrize("state", list(AgiState))
@pytest.mark.parametrize("given_input", list(INPUTS))
def test_every_state_and_input_pair_follows_the_transition_table(
    state: AgiState, given_input: str
) -> None:
    conn = in_state(state)
    expected = ALLOWED.get((state, given_input))
    if expected is None:
        with pytest.raises((AgiProtocolError, AgiStateError)):
            INPUTS[given_input](conn)
    else:
        INPUTS[given_input](conn)
        assert conn.state is expected


def test_send_command_while_a_reply_is_outstanding_is_a_local_state_error() -> None:
    conn = connected()
    conn.send_command(Answer())
    with pytest.raises(AgiStateError):
        conn.send_command(Noop())
    assert isinstance(AgiStateError("x"), IvrError)


# --- garbage, limits and truncation -------------------------------------------------------


def pull_all(conn: AgiServerConnection, limit: int = 10_000) -> list[Event]:
    out: list[Event] = []
    for _ in range(limit):
        event = conn.next_event()
        if event is None:
            return out
        out.append(event)
    raise AssertionError("next_event() did not stop")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="http-request"),
        pytest.param(b"\x16\x03\x01\x02\x00\x01", id="tls-hello"),
        pytest.param(b"\xff\xfe\xfd\n", id="non-ascii-line"),
        pytest.param(b"agi_network yes\n\n", id="no-colon-space"),
        pytest.param(b"agi_network:yes\n\n", id="colon-without-space"),
        pytest.param(b"network: yes\n\n", id="no-agi-prefix"),
        pytest.param(b"agi_net work: yes\n\n", id="space-in-name"),
        pytest.param(b"\n", id="empty-block"),
    ],
)
def test_given_garbage_instead_of_headers_then_protocol_error_without_waiting_for_eof(
    data: bytes,
) -> None:
    conn = AgiServerConnection()
    conn.receive_data(data)
    with pytest.raises(AgiProtocolError):
        pull_all(conn)
    with pytest.raises(AgiProtocolError):
        conn.next_event()  # the error is sticky


@pytest.mark.parametrize(
    "data",
    [b"", b"agi_network: yes\n", b"agi_network: yes\nagi_chan"],
    ids=["nothing", "no-blank", "mid-line"],
)
def test_given_eof_before_the_blank_line_then_protocol_error(data: bytes) -> None:
    conn = AgiServerConnection()
    if data:
        conn.receive_data(data)
        assert pull_all(conn) == []
    conn.receive_data(b"")
    with pytest.raises(AgiProtocolError):
        conn.next_event()


def test_given_a_header_line_beyond_the_size_limit_then_error_before_any_lf() -> None:
    conn = AgiServerConnection(max_header_bytes=1024)
    conn.receive_data(b"agi_x: " + b"a" * 1100)
    with pytest.raises(AgiProtocolError):
        conn.next_event()


def test_given_many_header_lines_beyond_the_size_limit_then_error() -> None:
    conn = AgiServerConnection(max_header_bytes=1024)
    conn.receive_data(b"".join(b"agi_v%d: value\n" % i for i in range(200)))
    with pytest.raises(AgiProtocolError):
        pull_all(conn)


def test_a_header_block_exactly_at_the_limit_is_accepted() -> None:
    block = encode_environment([("agi_x", "y" * 100)])
    conn = AgiServerConnection(max_header_bytes=len(block))
    conn.receive_data(block)
    assert isinstance(conn.next_event(), AgiEnvironment)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"300 what\n", id="unknown-code"),
        pytest.param(b"200 nope\n", id="no-result"),
        pytest.param(b"200-result=0\n", id="200-continuation"),
        pytest.param(b"hello\n", id="no-code"),
        pytest.param(b"\x00\x01\x02\n", id="binary"),
    ],
)
def test_given_garbage_instead_of_a_reply_then_protocol_error(data: bytes) -> None:
    conn = connected()
    conn.send_command(Noop())
    conn.receive_data(data)
    with pytest.raises(AgiProtocolError):
        conn.next_event()


def test_given_a_reply_with_no_command_outstanding_then_protocol_error() -> None:
    conn = connected()
    conn.receive_data(b"200 result=0\n")
    with pytest.raises(AgiProtocolError):
        conn.next_event()


def test_given_an_over_long_reply_line_then_error_before_its_lf() -> None:
    conn = connected(max_line_bytes=1000)
    conn.send_command(GetVariable("BIG"))
    conn.receive_data(b"200 result=1 (" + b"x" * 2000)
    with pytest.raises(AgiProtocolError):
        conn.next_event()


@pytest.mark.parametrize(
    "data",
    [b"200 result=0", b"520-Invalid command syntax.  Proper usage follows:\nStream the\n"],
    ids=["mid-line", "mid-520-block"],
)
def test_given_eof_inside_a_reply_then_protocol_error(data: bytes) -> None:
    conn = connected()
    conn.send_command("GET DATA")
    conn.receive_data(data)
    assert conn.next_event() is None
    conn.receive_data(b"")
    with pytest.raises(AgiProtocolError):
        conn.next_event()


def test_given_eof_between_lines_while_awaiting_a_reply_then_closed_not_an_error() -> None:
    conn = connected()
    conn.send_command(Noop())
    conn.receive_data(b"HANGUP\n")
    conn.receive_data(b"")
    assert conn.next_event() == AgiHangup()
    assert conn.next_event() is None
    assert conn.state is AgiState.CLOSED


def test_data_after_eof_is_a_protocol_error() -> None:
    conn = connected()
    conn.receive_data(b"")
    with pytest.raises(AgiProtocolError):
        conn.receive_data(b"HANGUP\n")


@settings(max_examples=200, deadline=None)
@given(noise=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=5))
def test_given_any_bytes_after_the_headers_then_events_or_protocol_error_never_a_hang(
    noise: bytes, cuts: list[int]
) -> None:
    conn = connected(max_line_bytes=64)
    conn.send_command(Noop())
    try:
        for part in [*split_at(noise, [c for c in cuts if c < len(noise)]), b""]:
            conn.receive_data(part)
            while conn.state is AgiState.IDLE and conn.next_event() is not None:
                pass
            if conn.state is AgiState.IDLE:
                conn.send_command(Noop())
            pull_all(conn)
    except AgiProtocolError:
        return
    assert conn.state is AgiState.CLOSED


@settings(max_examples=200, deadline=None)
@given(noise=st.binary(max_size=300))
def test_given_any_bytes_as_the_header_block_then_environment_or_error_at_eof(noise: bytes) -> None:
    conn = AgiServerConnection(max_header_bytes=128)
    try:
        conn.receive_data(noise)
        conn.receive_data(b"")
        events = pull_all(conn)
    except AgiProtocolError:
        return
    assert len(events) == 1
    assert isinstance(events[0], AgiEnvironment)


# --- building commands: send_command, quoting, parse_command ------------------------------


def test_send_command_refuses_newlines_and_lines_res_agi_would_cut() -> None:
    conn = connected()
    with pytest.raises(AgiEncodeError):
        conn.send_command("NOOP\nNOOP")
    with pytest.raises(AgiEncodeError):
        conn.send_command(SetVariable("X", "a\nb"))
    with pytest.raises(AgiEncodeError):
        conn.send_command(Verbose("x" * 2100))
    assert conn.state is AgiState.IDLE, "a refused command leaves the connection usable"
    assert conn.send_command(Verbose("x" * 2030)).endswith(b" 1\n")


@pytest.mark.parametrize(
    ("line", "argv"),
    [
        ('STREAM FILE beep ""', ("STREAM", "FILE", "beep", "")),
        (
            'SET VARIABLE GREETING "hello (world) x"',
            ("SET", "VARIABLE", "GREETING", "hello (world) x"),
        ),
        ("  NOOP \t ", ("NOOP",)),
        ("a\\ b c", ("a b", "c")),
        ('"a\\"b" \\\\', ('a"b', "\\")),
        ('ab"c d"e', ("abc de",)),
        ('x ""y', ("x", "y")),
        ('"" ""', ("", "")),
        ("\\x\\", ("x",)),
        ('"unterminated quote', ("unterminated quote",)),
        ("", ()),
    ],
)
def test_parse_command_follows_res_agi_parse_args(line: str, argv: tuple[str, ...]) -> None:
    assert parse_command(line) == argv


def test_parse_command_keeps_at_most_127_words_like_res_agi() -> None:
    argv = parse_command(" ".join(str(i) for i in range(200)))
    assert argv == tuple(str(i) for i in range(127))


_text = st.text(
    alphabet=st.characters(blacklist_characters="\n\r\x00", max_codepoint=0xD7FF),
    max_size=12,
)


@given(argv=st.lists(_text, max_size=20))
def test_parse_command_inverts_quote_for_any_words(argv: list[str]) -> None:
    assert parse_command(" ".join(quote(word) for word in argv)) == tuple(argv)


_ints = st.integers(-(2**31), 2**31 - 1)
_naturals = st.integers(0, 2**31 - 1)
_dtmf = st.text(alphabet="0123456789*#ABCD", max_size=6)

COMMANDS: st.SearchStrategy[AgiCommand] = st.one_of(
    st.just(Answer()),
    st.just(Noop()),
    st.builds(StreamFile, _text, _dtmf, st.none() | _naturals),
    st.builds(GetOption, _text, _dtmf, st.none() | _naturals),
    st.builds(GetData, _text) | st.builds(GetData, _text, _naturals, st.none() | _naturals),
    st.builds(WaitForDigit, _ints),
    st.builds(SayDigits, st.text(alphabet="0123456789", min_size=1, max_size=9), _dtmf),
    st.builds(SayNumber, _ints, _dtmf),
    st.builds(SetVariable, _text, _text),
    st.builds(GetVariable, _text),
    st.builds(GetFullVariable, _text, st.none() | _text),
    st.builds(Exec, _text, _text),
    st.builds(
        RecordFile,
        _text,
        _text,
        _dtmf,
        _ints,
        st.none() | _naturals,
        st.booleans(),
        st.none() | st.integers(1, 3600),
    ),
    st.builds(ChannelStatus, st.none() | _text),
    st.builds(Verbose, _text, _ints),
    st.builds(Hangup, st.none() | _text),
    st.builds(SetMusic, st.just(True), st.none() | _text) | st.just(SetMusic(False)),
)


@given(command=COMMANDS)
def test_command_from_argv_of_parse_command_inverts_to_line(command: AgiCommand) -> None:
    assert command_from_argv(parse_command(command.to_line())) == command


def test_command_words_match_case_insensitively_like_find_command() -> None:
    assert command_from_argv(parse_command("stream file beep 12")) == StreamFile("beep", "12")
    assert command_from_argv(parse_command("Get Full Variable ${X} chan")) == GetFullVariable(
        "${X}", "chan"
    )


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("FOO BAR", AgiUnknownCommand),
        ("", AgiUnknownCommand),
        ("GET", AgiUnknownCommand),
        ("GET DATA", AgiCommandSyntaxError),
        ("WAIT FOR DIGIT soon", AgiCommandSyntaxError),
        ("STREAM FILE beep", AgiCommandSyntaxError),
        ("SAY DIGITS abc", AgiCommandSyntaxError),
        ("SET MUSIC maybe", AgiCommandSyntaxError),
    ],
)
def test_invalid_lines_raise_the_error_that_maps_to_510_or_520(
    line: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        command_from_argv(parse_command(line))


# Quoting choices of the recording script that our canonical quoting does not copy.
_QUOTED_BY_CHOICE = {'GET FULL VARIABLE "${HANGUPCAUSE}"'}
_NOT_COMMANDS = {"FOO BAR": AgiUnknownCommand, "GET DATA": AgiCommandSyntaxError}


@pytest.mark.parametrize("name", AGI_TRACES)
def test_every_recorded_command_line_is_rebuilt_exactly_by_its_typed_command(name: str) -> None:
    for turn_line, _ in script(name).turns:
        line = turn_line.decode()[:-1]
        argv = parse_command(line)
        if line in _NOT_COMMANDS:
            with pytest.raises(_NOT_COMMANDS[line]):
                command_from_argv(argv)
            continue
        command = command_from_argv(argv)
        assert parse_command(command.to_line()) == argv
        if line not in _QUOTED_BY_CHOICE:
            assert command.to_line() == line


def test_typed_commands_quote_like_the_traces() -> None:
    assert StreamFile("beep").to_line() == 'STREAM FILE beep ""'
    assert GetOption("beep", "123", 3000).to_line() == 'GET OPTION beep "123" 3000'
    assert GetData("beep", max_digits=4).to_line() == "GET DATA beep 0 4"
    assert SetMusic(True, "default").to_line() == "SET MUSIC ON default"
    assert Exec("Dial", "Local/1001@trace-agents,20").to_line() == (
        "EXEC Dial Local/1001@trace-agents,20"
    )
    assert Exec("Playback", "a b").to_line() == 'EXEC Playback "a b"'
    assert RecordFile("msg", "wav", "#", 30000, beep=True, silence_s=3).to_line() == (
        'RECORD FILE msg wav "#" 30000 BEEP s=3'
    )
    assert Verbose('say "hi" \\ bye').to_line() == 'VERBOSE "say \\"hi\\" \\\\ bye" 1'


# --- the Asterisk-side command decoder ----------------------------------------------------


@pytest.mark.parametrize("name", AGI_TRACES)
def test_command_decoder_reads_back_every_recorded_command_byte_by_byte(name: str) -> None:
    decoder = AgiCommandDecoder()
    lines: list[str] = []
    for byte in bytewise([stream(_file(name), "out")]):
        decoder.receive_data(byte)
        while (line := decoder.next_command()) is not None:
            lines.append(line)
    decoder.receive_data(b"")
    assert decoder.next_command() is None
    assert lines == [line.decode()[:-1] for line, _ in script(name).turns]


def test_command_decoder_returns_an_unterminated_last_line_at_eof_like_res_agi() -> None:
    decoder = AgiCommandDecoder()
    decoder.receive_data(b"NOOP\nANSWER")
    assert decoder.next_command() == "NOOP"
    assert decoder.next_command() is None
    decoder.receive_data(b"")
    assert decoder.next_command() == "ANSWER"
    assert decoder.next_command() is None
    assert decoder.eof


@pytest.mark.parametrize("data", [b"x" * 2047, b"x" * 2047 + b"\n"], ids=["no-lf", "with-lf"])
def test_command_decoder_refuses_a_line_res_agi_could_not_hold(data: bytes) -> None:
    decoder = AgiCommandDecoder()
    decoder.receive_data(data)
    with pytest.raises(AgiProtocolError):
        decoder.next_command()
    with pytest.raises(AgiProtocolError):
        decoder.next_command()


def test_command_decoder_accepts_the_longest_line_res_agi_holds() -> None:
    decoder = AgiCommandDecoder()
    decoder.receive_data(b"x" * 2046 + b"\n")
    assert decoder.next_command() == "x" * 2046


def test_encode_environment_refuses_values_that_would_break_the_block() -> None:
    with pytest.raises(AgiEncodeError):
        encode_environment([("agi_x", "a\nb")])


def test_format_usage_reproduces_the_recorded_520_block() -> None:
    usage = (
        "Stream the given <replaceable>file</replaceable>, and receive DTMF data.",
        "Returns the digits received from the channel at the other end.",
    )
    expected = (
        b"520-Invalid command syntax.  Proper usage follows:\n"
        b"Stream the given <replaceable>file</replaceable>, and receive DTMF data.\n"
        b"Returns the digits received from the channel at the other end.\n"
        b"520 End of proper usage.\n"
    )
    assert format_usage(usage) == expected
    assert expected in stream(_file("ivr-dtmf-menu"), "in")
