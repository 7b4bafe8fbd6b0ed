"""Unit tests of the sans-I/O AMI codec (acd.protocol.ami) against the recorded Asterisk traces."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acd.errors import AcdError
from acd.protocol.ami import (
    BANNER,
    AmiBanner,
    AmiDecoder,
    AmiMessage,
    AmiProtocolError,
    encode_action,
    encode_message,
)
from tests.traces import chunks, stream, trace_names

AMI_TRACES = trace_names(".ami.jsonl")
Item = AmiBanner | AmiMessage


def _file(name: str) -> str:
    return f"{name}.ami.jsonl"


def decode_chunks(parts: Iterable[bytes], *, expect_banner: bool = True) -> list[Item]:
    """Feed every chunk, draining after each one, then EOF; return everything decoded."""
    decoder = AmiDecoder(expect_banner=expect_banner)
    out: list[Item] = []
    for part in [*parts, b""]:
        decoder.receive_data(part)
        while (item := decoder.next_event()) is not None:
            out.append(item)
    return out


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in pairwise(points) if b > a]


def messages_by_naive_split(data: bytes) -> list[AmiMessage]:
    """The reference framing from the traces README, section 2 (minimal replay)."""
    _, rest = data.split(b"\r\n", 1)
    out = []
    for raw in rest.split(b"\r\n\r\n")[:-1]:
        pairs = [line.decode("ascii").split(": ", 1) for line in raw.split(b"\r\n")]
        out.append(AmiMessage(tuple((k, v) for k, v in pairs)))
    return out


def message_with_action_id(name: str, action_id: str) -> AmiMessage:
    found = [
        m
        for m in decode_chunks([stream(_file(name), "in")])
        if isinstance(m, AmiMessage) and m.action_id == action_id and m.response is not None
    ]
    assert len(found) == 1
    return found[0]


# --- the recorded traces ------------------------------------------------------------------


@pytest.mark.parametrize("name", AMI_TRACES)
def test_every_trace_decodes_to_the_banner_then_one_message_per_blank_line(name: str) -> None:
    data = stream(_file(name), "in")
    items = decode_chunks([data])

    assert items[0] == AmiBanner("Asterisk Call Manager/11.0.0")
    assert data.startswith(BANNER)
    messages = items[1:]
    assert all(isinstance(m, AmiMessage) for m in messages)
    assert len(messages) == data[len(BANNER) :].count(b"\r\n\r\n")
    assert messages == messages_by_naive_split(data)


@pytest.mark.parametrize("name", AMI_TRACES)
def test_every_trace_decodes_the_same_whole_as_recorded_and_byte_by_byte(name: str) -> None:
    data = stream(_file(name), "in")
    whole = decode_chunks([data])

    assert decode_chunks(chunks(_file(name), "in")) == whole
    assert decode_chunks(data[i : i + 1] for i in range(len(data))) == whole


@pytest.mark.parametrize("name", AMI_TRACES)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_any_chunking_of_every_trace_decodes_the_same(name: str, data: st.DataObject) -> None:
    raw = stream(_file(name), "in")
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=60))

    assert decode_chunks(split_at(raw, cuts)) == decode_chunks([raw])


@pytest.mark.parametrize("name", AMI_TRACES)
def test_the_out_stream_decodes_server_side_to_the_actions_sent(name: str) -> None:
    records = chunks(_file(name), "out")
    messages = decode_chunks(records, expect_banner=False)

    assert len(messages) == len(records)  # one write() per action
    for msg in messages:
        assert isinstance(msg, AmiMessage)
        if msg.action_id == "no-action-header":  # ami-errors: deliberately sent without Action
            assert msg.action is None
        else:
            assert msg.headers[0][0] == "Action"


@pytest.mark.parametrize("name", AMI_TRACES)
def test_encoding_the_recorded_actions_reproduces_the_recorded_bytes(name: str) -> None:
    for record in chunks(_file(name), "out"):
        [msg] = decode_chunks([record], expect_banner=False)
        assert isinstance(msg, AmiMessage)
        assert encode_message(msg.headers) == record
        if msg.action is None:
            continue
        (_, action), *rest = msg.headers
        action_id = None
        if rest and rest[0][0] == "ActionID":
            (_, action_id), *rest = rest
        assert encode_action(action, action_id, rest) == record


def test_a_trace_ending_with_eof_after_a_whole_message_is_clean() -> None:
    decoder = AmiDecoder()
    decoder.receive_data(stream(_file("ami-shutdown"), "in"))
    decoder.receive_data(b"")
    items = []
    while (item := decoder.next_event()) is not None:
        items.append(item)

    assert decoder.eof
    assert decoder.buffered == 0
    last = items[-1]
    assert isinstance(last, AmiMessage)
    assert last.event == "Shutdown"
    assert decoder.next_event() is None


# --- message contents ---------------------------------------------------------------------


def test_command_output_lines_are_kept_as_repeated_keys_in_order() -> None:
    msg = message_with_action_id("ami-actions", "command-1")

    outputs = msg.get_all("Output")
    assert len(outputs) == 6
    assert outputs[0].startswith("Local/1004@trace-agents-00000001;2!trace-agents!1004!3!Up!")
    assert msg.get("output") == outputs[0]
    assert msg["Message"] == "Command output follows"


def test_a_value_containing_colon_space_is_split_on_the_first_separator_only() -> None:
    msg = message_with_action_id("ami-errors", "unknown-1")

    assert msg["Message"] == (
        "Invalid/unknown command: FooBarBaz. Use Action: ListCommands to show available commands."
    )


def test_an_empty_value_with_or_without_the_space_is_the_empty_string() -> None:
    [msg] = decode_chunks([b"AccountCode: \r\nExten:\r\nValue: x\r\n\r\n"], expect_banner=False)

    assert isinstance(msg, AmiMessage)
    assert msg.headers == (("AccountCode", ""), ("Exten", ""), ("Value", "x"))


def test_getvar_of_an_unset_variable_has_an_empty_value_in_the_trace() -> None:
    msg = message_with_action_id("ami-actions", "getvar-unset")

    assert msg.response == "Success"
    assert msg["Value"] == ""


def test_message_lookups_are_case_insensitive_and_take_the_first_match() -> None:
    msg = AmiMessage((("Event", "X"), ("ActionID", "a1"), ("Key", "1"), ("key", "2")))

    assert msg.get("KEY") == "1"
    assert msg.get_all("kEy") == ["1", "2"]
    assert msg["actionid"] == "a1"
    assert msg.action_id == "a1"
    assert msg.event == "X"
    assert msg.response is None
    assert msg.action is None
    assert "EVENT" in msg
    assert "Missing" not in msg
    assert 42 not in msg
    assert msg.get("Missing") is None
    assert msg.get("Missing", "d") == "d"
    with pytest.raises(KeyError):
        msg["Missing"]


def test_messages_compare_by_headers_only() -> None:
    a = AmiMessage((("Response", "Success"),))
    b = AmiMessage((("Response", "Success"),))
    a.get("Response")  # builds a's lookup cache

    assert a == b
    assert hash(a) == hash(b)


def test_blank_lines_between_messages_are_skipped() -> None:
    items = decode_chunks([b"\r\nA: 1\r\n\r\n\r\n\r\nB: 2\r\n\r\n"], expect_banner=False)

    assert items == [AmiMessage((("A", "1"),)), AmiMessage((("B", "2"),))]


def test_a_banner_only_stream_yields_the_banner_and_then_needs_more_data() -> None:
    decoder = AmiDecoder()
    decoder.receive_data(BANNER)

    assert decoder.next_event() == AmiBanner("Asterisk Call Manager/11.0.0")
    assert decoder.next_event() is None


# --- bad input ----------------------------------------------------------------------------


def test_a_line_without_separator_is_a_protocol_error_quoting_the_line() -> None:
    decoder = AmiDecoder(expect_banner=False)
    decoder.receive_data(b"Response: Success\r\n--END COMMAND--\r\n\r\n")

    with pytest.raises(AmiProtocolError, match="END COMMAND"):
        decoder.next_event()


def test_an_empty_key_is_a_protocol_error() -> None:
    decoder = AmiDecoder(expect_banner=False)
    decoder.receive_data(b": value\r\n\r\n")

    with pytest.raises(AmiProtocolError, match="empty key"):
        decoder.next_event()


def test_a_header_where_the_banner_is_expected_is_a_protocol_error() -> None:
    decoder = AmiDecoder()
    decoder.receive_data(b"Response: Success\r\n\r\n")

    with pytest.raises(AmiProtocolError, match="banner"):
        decoder.next_event()


def test_an_over_long_line_without_terminator_is_a_protocol_error() -> None:
    decoder = AmiDecoder(expect_banner=False, max_message_bytes=64)
    decoder.receive_data(b"Key: " + b"x" * 40)
    assert decoder.next_event() is None
    decoder.receive_data(b"x" * 40)

    with pytest.raises(AmiProtocolError, match="longer than 64"):
        decoder.next_event()


def test_an_over_long_complete_message_is_a_protocol_error() -> None:
    decoder = AmiDecoder(expect_banner=False, max_message_bytes=64)
    decoder.receive_data(b"Key: " + b"x" * 100 + b"\r\n\r\n")

    with pytest.raises(AmiProtocolError, match="longer than 64"):
        decoder.next_event()


def test_an_over_long_banner_is_a_protocol_error() -> None:
    decoder = AmiDecoder(max_message_bytes=16)
    decoder.receive_data(b"A" * 17)

    with pytest.raises(AmiProtocolError, match="banner"):
        decoder.next_event()


def test_eof_in_the_middle_of_a_message_is_a_protocol_error() -> None:
    data = stream(_file("ami-login"), "in")
    decoder = AmiDecoder()
    decoder.receive_data(data[:-1])
    while decoder.next_event() is not None:
        pass
    decoder.receive_data(b"")

    with pytest.raises(AmiProtocolError, match="closed in the middle"):
        decoder.next_event()


def test_eof_in_the_middle_of_the_banner_is_a_protocol_error() -> None:
    decoder = AmiDecoder()
    decoder.receive_data(b"Asterisk Call")
    decoder.receive_data(b"")

    with pytest.raises(AmiProtocolError, match="banner"):
        decoder.next_event()


def test_eof_before_anything_is_not_an_error() -> None:
    decoder = AmiDecoder()
    decoder.receive_data(b"")

    assert decoder.next_event() is None


def test_after_an_error_the_decoder_keeps_raising_it() -> None:
    decoder = AmiDecoder(expect_banner=False)
    decoder.receive_data(b"garbage\r\n\r\nA: 1\r\n\r\n")

    with pytest.raises(AmiProtocolError) as first:
        decoder.next_event()
    with pytest.raises(AmiProtocolError) as second:
        decoder.next_event()
    assert second.value is first.value


def test_data_after_eof_is_a_protocol_error() -> None:
    decoder = AmiDecoder()
    decoder.receive_data(b"")

    with pytest.raises(AmiProtocolError, match="after EOF"):
        decoder.receive_data(b"A: 1\r\n\r\n")


def test_the_protocol_error_belongs_to_the_acd_hierarchy() -> None:
    assert issubclass(AmiProtocolError, AcdError)
    assert AmiProtocolError.error_id == "ami-protocol-error"


@settings(max_examples=200, deadline=None)
@given(
    st.booleans(),
    st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.sampled_from([b"\r\n", b"\r\n\r\n", b": ", b":", b"\r", b"\n", b"Key: v"]),
        ),
        max_size=30,
    ),
)
def test_random_bytes_only_ever_raise_the_protocol_error_and_never_hang(
    expect_banner: bool, parts: list[bytes]
) -> None:
    decoder = AmiDecoder(expect_banner=expect_banner, max_message_bytes=256)
    total = sum(len(p) for p in parts)
    steps = 0
    try:
        for part in [*parts, b""]:
            decoder.receive_data(part)
            while decoder.next_event() is not None:
                steps += 1
                assert steps <= total + 1  # every item consumes at least one byte
    except AmiProtocolError:
        pass


# --- encoding -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [("Action", "Ping\r\nAction: Logoff")],
        [("Action", "Ping"), ("Variable", "A=1\nB=2")],
        [("Action", "Ping"), ("Bad\rKey", "v")],
        [("Action", "Ping"), ("Bad: Key", "v")],
        [("Action", "Ping"), ("", "v")],
        [],
    ],
)
def test_header_injection_and_empty_messages_are_refused_when_encoding(
    headers: list[tuple[str, str]],
) -> None:
    with pytest.raises(AmiProtocolError):
        encode_message(headers)


def test_encode_action_puts_action_then_action_id_then_fields_and_keeps_repeats() -> None:
    raw = encode_action(
        "Originate",
        "o-1",
        [("Channel", "Local/1@ctx"), ("Variable", "A=1"), ("Variable", "B=2")],
    )

    assert raw == (
        b"Action: Originate\r\nActionID: o-1\r\nChannel: Local/1@ctx\r\n"
        b"Variable: A=1\r\nVariable: B=2\r\n\r\n"
    )
    assert encode_action("Ping") == b"Action: Ping\r\n\r\n"


_keys = st.text(min_size=1, max_size=20).filter(lambda k: not any(c in k for c in ":\r\n"))
_values = st.text(max_size=40).filter(lambda v: "\r" not in v and "\n" not in v)
_headers = st.lists(st.tuples(_keys, _values), min_size=1, max_size=8)


@settings(max_examples=150, deadline=None)
@given(st.lists(_headers, min_size=1, max_size=5))
def test_encoded_messages_round_trip_through_the_server_side_decoder(
    messages: list[list[tuple[str, str]]],
) -> None:
    raw = b"".join(encode_message(h) for h in messages)

    assert decode_chunks([raw], expect_banner=False) == [AmiMessage(tuple(h)) for h in messages]


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=20).filter(lambda a: not any(c in a for c in "\r\n")), _headers)
def test_encoded_actions_round_trip_through_the_server_side_decoder(
    action: str, fields: list[tuple[str, str]]
) -> None:
    [msg] = decode_chunks([encode_action(action, "id-1", fields)], expect_banner=False)

    assert isinstance(msg, AmiMessage)
    assert msg.headers == (("Action", action), ("ActionID", "id-1"), *fields)
    assert msg.action == action
