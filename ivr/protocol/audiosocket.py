"""Sans-I/O codec for Asterisk's AudioSocket framing: bytes in, typed frames out.

Theory of operation
-------------------

This follows the AudioSocket reference recorded from Asterisk 22.10.1 in
``tests/fixtures/asterisk-traces/README.md`` (section 4.3 "AudioSocket" and the AudioSocket
table of section 3) and the ``audiosocket-*.audiosocket.{jsonl,in.bin,out.bin}`` traces, checked
against Asterisk's ``res/res_audiosocket.c`` and ``apps/app_audiosocket.c``. The traces win.

* Asterisk is the TCP **client**; our IVR is the server. Every frame, both ways, is
  ``kind`` (1 byte), ``length`` (2 bytes, **big-endian**), then ``length`` payload bytes.
  :func:`encode_frame` builds one; :class:`FrameDecoder` takes a byte stream apart again.
* The first frame from Asterisk is always ``UUID`` (``0x01``), 16 **raw** bytes: the binary
  form of the ``AudioSocket(<uuid>,host:port)`` argument (:func:`uuid_frame`,
  :func:`frame_uuid`). Ordering rules ("UUID first, once") belong to the session that uses the
  decoder (the server adapter), not to the framing.
* Audio (``0x10``) is signed linear 16-bit little-endian mono at 8 kHz: 320 bytes (20 ms) every
  20 ms, a last partial frame may be shorter (24 bytes seen). Kinds ``0x11`` to ``0x18`` carry
  the other slin rates of the channel driver. Audio payloads must be non-empty (res_audiosocket
  rejects ``length < 1``) and whole samples (even length).
* Caller DTMF is ``0x03`` with one ASCII digit, sent when the digit ends.
* Hangup is ``0x00`` with ``length 0``.
* ``SILENCE`` (``0x02``) and ``ERROR`` (``0xff``, optional error code) are decoded with any
  payload length; Asterisk 22 was never seen sending either (README 4.3, "Never seen").
* **Direction matters.** Asterisk's reader accepts only ``HANGUP`` and the audio kinds; any
  other kind from the server (e.g. a DTMF frame, trace ``audiosocket-bad-kind``) makes it log
  "Received AudioSocket message other than hangup or audio" and drop the socket with RST,
  ending the application with -1. :func:`encode_server_frame` is the guarded writer the server
  side must use: it refuses every kind outside :data:`SERVER_KINDS`.

Decoder rules (the h11 pattern): :meth:`FrameDecoder.receive_data` only appends bytes
(``b""`` marks EOF); :meth:`FrameDecoder.next_frame` returns one :class:`Frame` or ``None``
when more data is needed. A header is checked as soon as its 3 bytes are in, so a length above
``max_payload`` or an unknown kind fails at once instead of waiting for (or buffering) a
payload. A truncated frame at EOF, an unknown kind, or a length that breaks the per-kind rule
(UUID != 16, DTMF != 1, hangup != 0, audio empty or odd) raises
:class:`AudioSocketProtocolError`; the decoder then stays broken and raises the same error
again, so a caller can never spin on a bad stream.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import IntEnum
from typing import NoReturn

from ivr.errors import IvrError

__all__ = [
    "AUDIO_KINDS",
    "DTMF_DIGITS",
    "FRAME_BYTES",
    "FRAME_SECONDS",
    "HEADER_BYTES",
    "MAX_PAYLOAD",
    "SAMPLE_RATE",
    "SERVER_KINDS",
    "AudioSocketForbiddenKind",
    "AudioSocketProtocolError",
    "Frame",
    "FrameDecoder",
    "Kind",
    "audio_frame",
    "dtmf_frame",
    "encode_frame",
    "encode_server_frame",
    "frame_digit",
    "frame_uuid",
    "hangup_frame",
    "split_pcm",
    "uuid_frame",
]

SAMPLE_RATE = 8000
FRAME_SECONDS = 0.020
FRAME_BYTES = 320  # 160 samples of 16-bit slin = 20 ms at 8 kHz
HEADER_BYTES = 3
MAX_PAYLOAD = 0xFFFF
DTMF_DIGITS = frozenset("0123456789*#ABCD")


class AudioSocketProtocolError(IvrError):
    """The AudioSocket byte stream (or a frame built for it) breaks the framing rules."""

    error_id = "audiosocket-protocol-error"


class AudioSocketForbiddenKind(AudioSocketProtocolError):
    """The server tried to send a kind Asterisk would answer with a connection reset."""

    error_id = "audiosocket-forbidden-kind"


class Kind(IntEnum):
    """The frame kind byte (``enum ast_audiosocket_msg_kind``)."""

    HANGUP = 0x00
    UUID = 0x01
    SILENCE = 0x02
    DTMF = 0x03
    AUDIO = 0x10  # slin, 8 kHz
    AUDIO_12K = 0x11
    AUDIO_16K = 0x12
    AUDIO_24K = 0x13
    AUDIO_32K = 0x14
    AUDIO_44K = 0x15
    AUDIO_48K = 0x16
    AUDIO_96K = 0x17
    AUDIO_192K = 0x18
    ERROR = 0xFF


AUDIO_KINDS = frozenset(k for k in Kind if Kind.AUDIO <= k <= Kind.AUDIO_192K)
# What a server may send to Asterisk (res_audiosocket's reader accepts nothing else).
SERVER_KINDS = frozenset({Kind.HANGUP, *AUDIO_KINDS})
_KINDS: dict[int, Kind] = {int(k): k for k in Kind}


@dataclass(frozen=True, slots=True)
class Frame:
    """One AudioSocket frame: its kind and its raw payload."""

    kind: Kind
    payload: bytes


def _check_payload(kind: Kind, length: int) -> None:
    """Raise if `length` breaks the rule for `kind` (the same rule for decoding and encoding)."""
    if kind is Kind.UUID and length != 16:
        raise AudioSocketProtocolError(f"UUID frame with length {length}, expected 16")
    if kind is Kind.DTMF and length != 1:
        raise AudioSocketProtocolError(f"DTMF frame with length {length}, expected 1")
    if kind is Kind.HANGUP and length != 0:
        raise AudioSocketProtocolError(f"hangup frame with length {length}, expected 0")
    if kind in AUDIO_KINDS and (length == 0 or length % 2):
        raise AudioSocketProtocolError(
            f"audio frame (kind 0x{kind:02x}) with length {length}: "
            "must be a non-empty whole number of 16-bit samples"
        )


def _check_digit(payload: bytes) -> None:
    if chr(payload[0]) not in DTMF_DIGITS:
        raise AudioSocketProtocolError(f"DTMF frame with a non-digit payload {payload!r}")


def encode_frame(kind: Kind, payload: bytes = b"") -> bytes:
    """One frame on the wire: kind byte, big-endian 16-bit length, payload (any direction)."""
    if not isinstance(kind, Kind):
        raise AudioSocketProtocolError(f"unknown AudioSocket kind {kind!r}")
    if len(payload) > MAX_PAYLOAD:
        raise AudioSocketProtocolError(
            f"payload of {len(payload)} bytes exceeds the 16-bit length field ({MAX_PAYLOAD})"
        )
    _check_payload(kind, len(payload))
    if kind is Kind.DTMF:
        _check_digit(payload)
    return bytes((kind,)) + len(payload).to_bytes(2, "big") + payload


def encode_server_frame(kind: Kind, payload: bytes = b"") -> bytes:
    """:func:`encode_frame` for the server side: only ``HANGUP`` and the audio kinds pass.

    Anything else (DTMF, UUID, SILENCE, ERROR) would make Asterisk reset the connection and
    end ``AudioSocket()`` with -1 (trace ``audiosocket-bad-kind``), so it is refused here,
    before a byte is written.
    """
    if kind not in SERVER_KINDS:
        raise AudioSocketForbiddenKind(
            f"a server must not send kind {kind!r}: Asterisk would reset the connection"
        )
    return encode_frame(kind, payload)


def uuid_frame(value: uuid.UUID) -> bytes:
    """The first frame Asterisk sends: kind 0x01 with the 16 raw bytes of the UUID."""
    return encode_frame(Kind.UUID, value.bytes)


def audio_frame(pcm: bytes) -> bytes:
    """An 8 kHz slin audio frame (kind 0x10)."""
    return encode_frame(Kind.AUDIO, pcm)


def dtmf_frame(digit: str) -> bytes:
    """A caller DTMF frame (kind 0x03, the ASCII digit), as Asterisk sends it at digit end."""
    if len(digit) != 1 or digit not in DTMF_DIGITS:
        raise AudioSocketProtocolError(f"not a DTMF digit: {digit!r}")
    return encode_frame(Kind.DTMF, digit.encode("ascii"))


def hangup_frame() -> bytes:
    """The hangup frame (kind 0x00, length 0)."""
    return encode_frame(Kind.HANGUP)


def frame_uuid(frame: Frame) -> uuid.UUID:
    """The call UUID carried by a UUID frame."""
    if frame.kind is not Kind.UUID or len(frame.payload) != 16:
        raise AudioSocketProtocolError(f"not a UUID frame: {frame.kind!r}")
    return uuid.UUID(bytes=frame.payload)


def frame_digit(frame: Frame) -> str:
    """The DTMF digit carried by a DTMF frame, e.g. ``"5"``."""
    if frame.kind is not Kind.DTMF or len(frame.payload) != 1:
        raise AudioSocketProtocolError(f"not a DTMF frame: {frame.kind!r}")
    _check_digit(frame.payload)
    return chr(frame.payload[0])


def split_pcm(pcm: bytes, frame_bytes: int = FRAME_BYTES) -> list[bytes]:
    """Cut PCM into `frame_bytes` pieces; the last one may be shorter, like a prompt's tail."""
    if frame_bytes <= 0 or frame_bytes % 2:
        raise ValueError(f"frame size must be a positive even number of bytes: {frame_bytes}")
    if len(pcm) % 2:
        raise AudioSocketProtocolError(f"PCM of odd length {len(pcm)} is not 16-bit samples")
    return [pcm[i : i + frame_bytes] for i in range(0, len(pcm), frame_bytes)]


class FrameDecoder:
    """Incremental AudioSocket decoder: feed bytes with receive_data(), pull with next_frame()."""

    __slots__ = ("_buffer", "_eof", "_error", "_max_payload")

    def __init__(self, *, max_payload: int = MAX_PAYLOAD) -> None:
        if not 0 < max_payload <= MAX_PAYLOAD:
            raise ValueError(f"max_payload must be in 1..{MAX_PAYLOAD}: {max_payload}")
        self._max_payload = max_payload
        self._buffer = bytearray()
        self._eof = False
        self._error: AudioSocketProtocolError | None = None

    @property
    def ended(self) -> bool:
        """True once EOF was received and every buffered frame has been returned."""
        return self._eof and not self._buffer and self._error is None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        """Append received bytes; ``b""`` means the peer closed (EOF)."""
        if self._eof and data:
            self._fail(AudioSocketProtocolError("data received after EOF"))
        if not data:
            self._eof = True
            return
        self._buffer += data

    def next_frame(self) -> Frame | None:
        """The next whole frame, or ``None`` if more data is needed (or the stream ended)."""
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        if len(buffer) < HEADER_BYTES:
            if self._eof and buffer:
                self._fail(
                    AudioSocketProtocolError(
                        f"EOF inside a frame header ({len(buffer)} of 3 bytes)"
                    )
                )
            return None
        kind = _KINDS.get(buffer[0])
        if kind is None:
            self._fail(AudioSocketProtocolError(f"unknown AudioSocket kind 0x{buffer[0]:02x}"))
        length = int.from_bytes(buffer[1:3], "big")
        if length > self._max_payload:
            self._fail(
                AudioSocketProtocolError(
                    f"frame of kind {kind.name} announces {length} bytes, "
                    f"above the limit of {self._max_payload}"
                )
            )
        try:
            _check_payload(kind, length)
        except AudioSocketProtocolError as err:
            self._fail(err)
        end = HEADER_BYTES + length
        if len(buffer) < end:
            if self._eof:
                self._fail(
                    AudioSocketProtocolError(
                        f"EOF inside a {kind.name} frame payload "
                        f"({len(buffer) - HEADER_BYTES} of {length} bytes)"
                    )
                )
            return None
        payload = bytes(buffer[HEADER_BYTES:end])
        if kind is Kind.DTMF:
            try:
                _check_digit(payload)
            except AudioSocketProtocolError as err:
                self._fail(err)
        del buffer[:end]
        return Frame(kind, payload)

    def _fail(self, error: AudioSocketProtocolError) -> NoReturn:
        """Enter the error state for good and raise `error`."""
        self._error = error
        self._buffer.clear()
        raise error
