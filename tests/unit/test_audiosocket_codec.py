"""Unit tests of the sans-I/O AudioSocket codec (ivr.protocol.audiosocket) against the traces,
and of the simulator's PCM helpers (asterisk_sim.audio) that feed it."""

from __future__ import annotations

import base64
import json
import re
import uuid
import wave
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asterisk_sim.audio import AudioFormatError, read_wav_pcm, silence, tone, write_wav
from asterisk_sim.errors import SimError
from ivr.errors import IvrError
from ivr.protocol.audiosocket import (
    AUDIO_KINDS,
    FRAME_BYTES,
    FRAME_SECONDS,
    SAMPLE_RATE,
    SERVER_KINDS,
    AudioSocketForbiddenKind,
    AudioSocketProtocolError,
    Frame,
    FrameDecoder,
    Kind,
    audio_frame,
    dtmf_frame,
    encode_frame,
    encode_server_frame,
    frame_digit,
    frame_uuid,
    hangup_frame,
    split_pcm,
    uuid_frame,
)
from tests.traces import TRACES_DIR, load, trace_names

CASES = trace_names(".audiosocket.jsonl")
STREAMS = [(case, d) for case in CASES for d in ("in", "out")]
KNOWN_KINDS = {int(k) for k in Kind}


def recorded_frames(case: str, direction: str) -> list[tuple[int, int, bytes]]:
    """(kind, len, payload) of every frame logged in one direction of `case`."""
    out = []
    path = TRACES_DIR / f"{case}.audiosocket.jsonl"
    for line in path.read_text(encoding="ascii").splitlines():
        raw = json.loads(line)
        if raw["dir"] == direction:
            out.append((raw["kind"], raw["len"], base64.b64decode(raw["payload_b64"])))
    return out


def recorded_bytes(case: str, direction: str) -> bytes:
    return (TRACES_DIR / f"{case}.audiosocket.{direction}.bin").read_bytes()


def decode_chunks(parts: Iterable[bytes], **kwargs: int) -> list[Frame]:
    """Feed every chunk, draining after each one, then EOF; return everything decoded."""
    decoder = FrameDecoder(**kwargs)
    out: list[Frame] = []
    for part in [*parts, b""]:
        decoder.receive_data(part)
        while (frame := decoder.next_frame()) is not None:
            out.append(frame)
    assert decoder.ended
    return out


def drain_or_error(data: bytes) -> list[Frame]:
    """Decode `data` then EOF; a bounded loop, so a decoder that never progresses fails."""
    decoder = FrameDecoder()
    decoder.receive_data(data)
    decoder.receive_data(b"")
    frames: list[Frame] = []
    for _ in range(len(data) + 2):
        frame = decoder.next_frame()
        if frame is None:
            return frames
        frames.append(frame)
    raise AssertionError("decoder kept returning frames past the end of its input")


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in pairwise(points) if b > a]


def as_tuples(frames: list[Frame]) -> list[tuple[int, int, bytes]]:
    return [(int(f.kind), len(f.payload), f.payload) for f in frames]


# --- the recorded traces ------------------------------------------------------------------


def test_every_audiosocket_case_is_present() -> None:
    assert CASES == [
        "audiosocket-audio",
        "audiosocket-bad-kind",
        "audiosocket-caller-hangup",
        "audiosocket-dtmf",
        "audiosocket-server-close",
    ]


@pytest.mark.parametrize(("case", "direction"), STREAMS)
def test_every_bin_stream_decodes_whole_to_exactly_the_logged_frames(
    case: str, direction: str
) -> None:
    frames = decode_chunks([recorded_bytes(case, direction)])

    assert as_tuples(frames) == recorded_frames(case, direction)


@pytest.mark.parametrize(("case", "direction"), STREAMS)
def test_every_bin_stream_decodes_byte_by_byte_to_the_logged_frames(
    case: str, direction: str
) -> None:
    data = recorded_bytes(case, direction)

    frames = decode_chunks(data[i : i + 1] for i in range(len(data)))

    assert as_tuples(frames) == recorded_frames(case, direction)


@pytest.mark.parametrize(("case", "direction"), STREAMS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_any_chunking_of_every_bin_stream_decodes_the_same(
    case: str, direction: str, data: st.DataObject
) -> None:
    stream = recorded_bytes(case, direction)
    cuts = data.draw(st.lists(st.integers(0, max(0, len(stream))), max_size=40))

    frames = decode_chunks(split_at(stream, cuts))

    assert as_tuples(frames) == recorded_frames(case, direction)


@pytest.mark.parametrize(("case", "direction"), STREAMS)
def test_re_encoding_the_logged_frames_reproduces_the_bin_bytes(case: str, direction: str) -> None:
    encoded = b"".join(
        encode_frame(Kind(kind), payload) for kind, _, payload in recorded_frames(case, direction)
    )

    assert encoded == recorded_bytes(case, direction)


@pytest.mark.parametrize("case", CASES)
def test_the_uuid_frame_is_first_and_carries_the_uuid_passed_to_exec_audiosocket(
    case: str,
) -> None:
    exec_line = next(
        r.data.decode() for r in load(f"{case}.agi.jsonl") if r.data.startswith(b"EXEC AudioSocket")
    )
    match = re.match(r"EXEC AudioSocket ([0-9a-f-]{36}),127\.0\.0\.1:4574\n", exec_line)
    assert match is not None

    first = decode_chunks([recorded_bytes(case, "in")])[0]

    assert first.kind is Kind.UUID
    assert frame_uuid(first) == uuid.UUID(match.group(1))
    assert uuid_frame(frame_uuid(first)) == recorded_bytes(case, "in")[:19]


def test_the_audio_case_uuid_frame_gives_the_documented_uuid() -> None:
    first = decode_chunks([recorded_bytes("audiosocket-audio", "in")])[0]

    assert frame_uuid(first) == uuid.UUID("6f0c1a52-0a0b-4c8e-9d6f-00000000000a")
    assert first.payload.hex(" ") == "6f 0c 1a 52 0a 0b 4c 8e 9d 6f 00 00 00 00 00 0a"


def test_the_audio_case_has_199_full_frames_and_one_24_byte_frame_from_asterisk() -> None:
    frames = decode_chunks([recorded_bytes("audiosocket-audio", "in")])[1:]

    sizes = [len(f.payload) for f in frames]
    assert {f.kind for f in frames} == {Kind.AUDIO}
    assert sizes.count(FRAME_BYTES) == 199
    assert sizes.count(24) == 1


def test_the_tone_our_server_sent_is_100_frames_of_tone_440_then_a_hangup() -> None:
    frames = decode_chunks([recorded_bytes("audiosocket-audio", "out")])

    assert [f.kind for f in frames] == [Kind.AUDIO] * 100 + [Kind.HANGUP]
    assert b"".join(f.payload for f in frames) == tone(440, 2.0)
    assert split_pcm(tone(440, 2.0)) == [f.payload for f in frames[:100]]


def test_the_dtmf_case_carries_5_then_7_as_ascii_digits() -> None:
    frames = decode_chunks([recorded_bytes("audiosocket-dtmf", "in")])

    assert [frame_digit(f) for f in frames if f.kind is Kind.DTMF] == ["5", "7"]


def test_the_bad_kind_case_out_stream_is_exactly_what_the_server_guard_refuses() -> None:
    (frame,) = decode_chunks([recorded_bytes("audiosocket-bad-kind", "out")])

    assert frame == Frame(Kind.DTMF, b"1")
    with pytest.raises(AudioSocketForbiddenKind):
        encode_server_frame(frame.kind, frame.payload)


# --- encoding -----------------------------------------------------------------------------


def test_a_frame_is_kind_then_big_endian_length_then_payload() -> None:
    assert encode_frame(Kind.AUDIO, b"\x01\x02" * 200) == b"\x10\x01\x90" + b"\x01\x02" * 200
    assert hangup_frame() == b"\x00\x00\x00"
    assert dtmf_frame("#") == b"\x03\x00\x01#"
    assert audio_frame(b"\x00\x00") == b"\x10\x00\x02\x00\x00"


def test_a_payload_over_65535_bytes_cannot_be_encoded() -> None:
    with pytest.raises(AudioSocketProtocolError, match="65535"):
        encode_frame(Kind.AUDIO, bytes(65536))
    assert len(encode_frame(Kind.AUDIO, bytes(65534))) == 65537


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        (Kind.UUID, bytes(15)),
        (Kind.DTMF, b"12"),
        (Kind.DTMF, b"x"),
        (Kind.HANGUP, b"\x00"),
        (Kind.AUDIO, b""),
        (Kind.AUDIO, b"\x00"),
    ],
)
def test_encoding_refuses_a_payload_that_breaks_the_rule_of_its_kind(
    kind: Kind, payload: bytes
) -> None:
    with pytest.raises(AudioSocketProtocolError):
        encode_frame(kind, payload)


@pytest.mark.parametrize("kind", sorted(set(Kind) - SERVER_KINDS))
def test_the_server_writer_refuses_every_kind_but_hangup_and_audio(kind: Kind) -> None:
    with pytest.raises(AudioSocketForbiddenKind):
        encode_server_frame(kind, b"1")


@pytest.mark.parametrize("kind", sorted(SERVER_KINDS))
def test_the_server_writer_accepts_hangup_and_every_audio_kind(kind: Kind) -> None:
    payload = b"" if kind is Kind.HANGUP else bytes(FRAME_BYTES)
    assert encode_server_frame(kind, payload) == encode_frame(kind, payload)


def test_audio_constants_describe_20_ms_of_8_khz_slin() -> None:
    assert FRAME_BYTES == 2 * SAMPLE_RATE * FRAME_SECONDS
    assert {int(k) for k in AUDIO_KINDS} == set(range(0x10, 0x19))


def test_split_pcm_keeps_a_short_last_frame_and_refuses_half_samples() -> None:
    assert [len(p) for p in split_pcm(bytes(FRAME_BYTES * 2 + 24))] == [320, 320, 24]
    assert split_pcm(b"") == []
    with pytest.raises(AudioSocketProtocolError):
        split_pcm(b"\x00")


@settings(max_examples=200, deadline=None)
@given(
    frames=st.lists(
        st.one_of(
            st.binary(min_size=1, max_size=700)
            .filter(lambda b: len(b) % 2 == 0)
            .map(lambda b: Frame(Kind.AUDIO, b)),
            st.sampled_from("0123456789*#ABCD").map(lambda d: Frame(Kind.DTMF, d.encode())),
            st.uuids().map(lambda u: Frame(Kind.UUID, u.bytes)),
            st.just(Frame(Kind.HANGUP, b"")),
            st.binary(max_size=8).map(lambda b: Frame(Kind.ERROR, b)),
        ),
        max_size=20,
    ),
    data=st.data(),
)
def test_any_frames_round_trip_through_any_chunking(
    frames: list[Frame], data: st.DataObject
) -> None:
    stream = b"".join(encode_frame(f.kind, f.payload) for f in frames)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))

    assert decode_chunks(split_at(stream, cuts)) == frames


# --- decoding errors ----------------------------------------------------------------------


def test_a_partial_header_needs_more_data_then_is_an_error_at_eof() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(b"\x10\x01")
    assert decoder.next_frame() is None

    decoder.receive_data(b"")

    with pytest.raises(AudioSocketProtocolError, match="header"):
        decoder.next_frame()


@pytest.mark.parametrize(("case", "direction"), [s for s in STREAMS if len(recorded_bytes(*s)) > 3])
def test_every_trace_cut_short_inside_its_last_frame_is_an_error_at_eof(
    case: str, direction: str
) -> None:
    data = recorded_bytes(case, direction)

    with pytest.raises(AudioSocketProtocolError, match="EOF inside"):
        drain_or_error(data[:-1])


@pytest.mark.parametrize("kind", sorted(set(range(256)) - KNOWN_KINDS))
def test_an_unknown_kind_is_an_error_as_soon_as_its_header_arrives(kind: int) -> None:
    decoder = FrameDecoder()
    decoder.receive_data(bytes((kind, 0x00, 0x05)))

    with pytest.raises(AudioSocketProtocolError, match="unknown AudioSocket kind"):
        decoder.next_frame()


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"\x01\x00\x10", None),
        (b"\x01\x00\x0f", "UUID frame with length 15"),
        (b"\x01\x00\x24", "UUID frame with length 36"),
        (b"\x03\x00\x02", "DTMF frame with length 2"),
        (b"\x03\x00\x00", "DTMF frame with length 0"),
        (b"\x00\x00\x01", "hangup frame with length 1"),
        (b"\x10\x00\x00", "non-empty whole number"),
        (b"\x10\x01\x41", "non-empty whole number"),
        (b"\x18\x00\x03", "non-empty whole number"),
    ],
)
def test_a_length_that_breaks_the_rule_of_its_kind_fails_on_the_header(
    header: bytes, message: str | None
) -> None:
    decoder = FrameDecoder()
    decoder.receive_data(header)

    if message is None:
        assert decoder.next_frame() is None
    else:
        with pytest.raises(AudioSocketProtocolError, match=message):
            decoder.next_frame()


def test_a_dtmf_payload_that_is_not_a_digit_is_an_error() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(b"\x03\x00\x01x")

    with pytest.raises(AudioSocketProtocolError, match="non-digit"):
        decoder.next_frame()


def test_a_length_above_max_payload_fails_without_waiting_for_the_payload() -> None:
    decoder = FrameDecoder(max_payload=FRAME_BYTES)
    decoder.receive_data(b"\x10\x01\x42")

    with pytest.raises(AudioSocketProtocolError, match="above the limit of 320"):
        decoder.next_frame()


def test_after_an_error_the_decoder_keeps_raising_it() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(b"\x42\x00\x00" + hangup_frame())
    with pytest.raises(AudioSocketProtocolError) as first:
        decoder.next_frame()

    with pytest.raises(AudioSocketProtocolError) as second:
        decoder.next_frame()

    assert second.value is first.value
    assert decoder.buffered == 0


def test_data_after_eof_is_a_protocol_error() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(b"")

    with pytest.raises(AudioSocketProtocolError, match="after EOF"):
        decoder.receive_data(hangup_frame())


def test_eof_before_anything_is_a_clean_end() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(b"")

    assert decoder.next_frame() is None
    assert decoder.ended


def test_frames_are_returned_one_at_a_time_with_trailing_data_kept() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(dtmf_frame("5") + hangup_frame()[:2])

    assert decoder.next_frame() == Frame(Kind.DTMF, b"5")
    assert decoder.next_frame() is None
    assert decoder.buffered == 2


def test_frame_accessors_refuse_the_wrong_kind() -> None:
    with pytest.raises(AudioSocketProtocolError):
        frame_uuid(Frame(Kind.DTMF, b"1"))
    with pytest.raises(AudioSocketProtocolError):
        frame_digit(Frame(Kind.UUID, bytes(16)))


def test_the_protocol_error_belongs_to_the_ivr_hierarchy() -> None:
    assert issubclass(AudioSocketProtocolError, IvrError)
    assert AudioSocketProtocolError.error_id == "audiosocket-protocol-error"
    assert issubclass(AudioSocketForbiddenKind, AudioSocketProtocolError)


@settings(max_examples=500, deadline=None)
@given(garbage=st.binary(max_size=400))
def test_random_bytes_end_in_frames_then_a_clean_end_or_a_protocol_error_never_a_hang(
    garbage: bytes,
) -> None:
    try:
        frames = drain_or_error(garbage)
    except AudioSocketProtocolError:
        return
    assert b"".join(encode_frame(f.kind, f.payload) for f in frames) == garbage


@settings(max_examples=200, deadline=None)
@given(garbage=st.binary(min_size=1, max_size=200), data=st.data())
def test_random_bytes_fed_in_any_chunking_decode_the_same_as_whole(
    garbage: bytes, data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(garbage)), max_size=10))

    def outcome(parts: list[bytes]) -> list[Frame] | str:
        try:
            return decode_chunks(parts)
        except AudioSocketProtocolError as err:
            return str(err)

    assert outcome(split_at(garbage, cuts)) == outcome([garbage])


# --- asterisk_sim.audio: the PCM the simulator streams ----------------------------------------


def write_raw_wav(path: Path, frames: bytes, *, channels: int, width: int, rate: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(frames)


def test_an_8khz_mono_16bit_wav_is_read_unchanged() -> None:
    path = TRACES_DIR / "mixmonitor-example.wav"
    with wave.open(str(path), "rb") as wav:
        raw = wav.readframes(wav.getnframes())

    pcm = read_wav_pcm(path)

    assert pcm == raw
    assert len(pcm) == 2 * 24480  # the 3.06 s of README section 4.5


def test_write_wav_then_read_wav_pcm_round_trips(tmp_path: Path) -> None:
    pcm = tone(440, 0.5)
    write_wav(tmp_path / "t.wav", pcm)

    assert read_wav_pcm(tmp_path / "t.wav") == pcm
    assert (tmp_path / "t.wav").stat().st_size == 44 + len(pcm)


def test_a_16khz_stereo_wav_is_downmixed_and_resampled_to_8khz(tmp_path: Path) -> None:
    left_right = b"".join(
        int(v).to_bytes(2, "little", signed=True) + int(-v).to_bytes(2, "little", signed=True)
        for v in range(0, 3200, 2)
    )
    write_raw_wav(tmp_path / "s.wav", left_right, channels=2, width=2, rate=16000)

    pcm = read_wav_pcm(tmp_path / "s.wav")

    assert len(pcm) == 1600 // 2 * 2  # 1600 stereo frames at 16 kHz -> 800 samples
    assert pcm == bytes(len(pcm))  # left + right cancel out


def test_a_16khz_wav_keeps_every_other_sample_and_a_6khz_wav_is_interpolated(
    tmp_path: Path,
) -> None:
    ramp = [3 * n for n in range(600)]
    raw = b"".join(v.to_bytes(2, "little", signed=True) for v in ramp)
    write_raw_wav(tmp_path / "16k.wav", raw, channels=1, width=2, rate=16000)
    write_raw_wav(tmp_path / "6k.wav", raw, channels=1, width=2, rate=6000)

    def samples(pcm: bytes) -> list[int]:
        return [
            int.from_bytes(pcm[i : i + 2], "little", signed=True) for i in range(0, len(pcm), 2)
        ]

    assert samples(read_wav_pcm(tmp_path / "16k.wav")) == ramp[::2]
    up = samples(read_wav_pcm(tmp_path / "6k.wav"))
    assert len(up) == 800
    assert up[:5] == [0, 2, 4, 7, 9]  # 3 * n * 6000 / 8000, rounded


def test_an_8bit_wav_is_widened_to_16bit(tmp_path: Path) -> None:
    write_raw_wav(tmp_path / "b.wav", bytes([128, 255, 0]), channels=1, width=1, rate=8000)

    pcm = read_wav_pcm(tmp_path / "b.wav")

    assert [int.from_bytes(pcm[i : i + 2], "little", signed=True) for i in (0, 2, 4)] == [
        0,
        127 << 8,
        -128 << 8,
    ]


def test_unsupported_audio_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    write_raw_wav(tmp_path / "w.wav", bytes(30), channels=1, width=3, rate=8000)
    (tmp_path / "x.wav").write_bytes(b"not a wav at all")

    with pytest.raises(AudioFormatError, match="24-bit"):
        read_wav_pcm(tmp_path / "w.wav")
    with pytest.raises(AudioFormatError, match=r"x\.wav"):
        read_wav_pcm(tmp_path / "x.wav")
    assert issubclass(AudioFormatError, SimError)


def test_tone_and_silence_have_the_requested_length_in_8khz_samples() -> None:
    assert len(tone(1000, 0.02)) == FRAME_BYTES
    assert len(silence(1.0)) == 2 * SAMPLE_RATE
    assert silence(0.02) == bytes(FRAME_BYTES)
    assert tone(440, 0.0) == b""
