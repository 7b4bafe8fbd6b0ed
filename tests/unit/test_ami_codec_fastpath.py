"""The AMI codec's fast paths (framing per read, exact-spelling lookups) match simple references."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from acd.domain.pbx_events import ChannelSnapshot, Newchannel
from acd.protocol.ami import AmiDecoder, AmiMessage, AmiProtocolError
from acd.protocol.ami_events import CHANNEL_BLOCK, decode_event


def _reference_messages(
    data: bytes, max_bytes: int, eof: bool = False
) -> tuple[list[AmiMessage], bool]:
    """Framing as the AMI reference states it: skip CRLFs, cut at each first CRLFCRLF."""
    out: list[AmiMessage] = []
    pos = 0
    while True:
        while data.startswith(b"\r\n", pos):
            pos += 2
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            tail = len(data) - pos  # an error if too long, or cut short by EOF
            return out, tail > max_bytes or (eof and tail > 0)
        if end - pos > max_bytes:
            return out, True
        headers = []
        for line in data[pos:end].decode("utf-8", "surrogateescape").split("\r\n"):
            key, sep, value = line.partition(": ")
            if not sep and line.endswith(":") and len(line) > 1:
                key, sep, value = line[:-1], ":", ""
            if not sep or not key:
                return out, True
            headers.append((key, value))
        out.append(AmiMessage(tuple(headers)))
        pos = end + 4


def _decode(parts: list[bytes], max_bytes: int) -> tuple[list[AmiMessage], bool]:
    decoder = AmiDecoder(expect_banner=False, max_message_bytes=max_bytes)
    out: list[AmiMessage] = []
    try:
        for part in parts:
            decoder.receive_data(part)
            while (item := decoder.next_event()) is not None:
                assert isinstance(item, AmiMessage)
                out.append(item)
    except AmiProtocolError:
        return out, True
    return out, False


_pieces = st.sampled_from(
    [b"\r\n", b"\r\n\r\n", b"\r", b"\n", b": ", b":", b"Key", b"kEY", b"v", b"\xc3\xa9", b"\xff"]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_pieces, max_size=40),
    st.lists(st.integers(min_value=0, max_value=60), max_size=6),
    st.integers(min_value=1, max_value=40),
    st.booleans(),
)
def test_any_stream_in_any_chunks_frames_like_the_reference(
    pieces: list[bytes], cuts: list[int], max_bytes: int, eof: bool
) -> None:
    data = b"".join(pieces)
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    parts = [data[a:b] for a, b in itertools.pairwise(bounds)] + ([b""] if eof else [])

    expected, expect_error = _reference_messages(data, max_bytes, eof)
    got, error = _decode(parts, max_bytes)

    assert got == expected[: len(got)]
    if expect_error:
        assert error
    else:
        assert (got, error) == (expected, False)


_names = st.sampled_from(["Event", "event", "EVENT", "Channel", "channel", "Key", "key", "X"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_names, st.sampled_from(["1", "2", ""])), min_size=1, max_size=8))
def test_lookups_take_the_first_case_insensitive_match_whatever_the_spellings(
    headers: list[tuple[str, str]],
) -> None:
    for built in (AmiMessage(tuple(headers)), _decode([_encode(headers)], 1 << 20)[0][0]):
        for asked in ["Event", "event", "EVENT", "eVeNt", "Channel", "key", "KEY", "X", "Y"]:
            matches = [v for k, v in headers if k.lower() == asked.lower()]
            assert built.get(asked) == (matches[0] if matches else None)
            assert (asked in built) == bool(matches)
            hit = built.exact_index().get(asked)
            assert hit is None or hit == matches[0]


def _encode(headers: list[tuple[str, str]]) -> bytes:
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in headers) + b"\r\n"


def test_a_channel_block_in_another_case_decodes_like_asterisks_spelling() -> None:
    values = {name: str(i) for i, name in enumerate(CHANNEL_BLOCK)}
    values["CallerIDNum"] = "<unknown>"
    exact = AmiMessage((("Event", "Newchannel"), *values.items()))
    shouted = AmiMessage((("EVENT", "Newchannel"), *((k.upper(), v) for k, v in values.items())))

    event = decode_event(shouted)

    assert event == decode_event(exact)
    assert isinstance(event, Newchannel)
    assert event.channel == ChannelSnapshot(
        name="0",
        unique_id="12",
        linked_id="13",
        state=1,
        state_desc="2",
        caller_id_num="",
        caller_id_name="4",
        connected_line_num="5",
        connected_line_name="6",
        language="7",
        account_code="8",
        context="9",
        exten="10",
        priority=11,
    )
