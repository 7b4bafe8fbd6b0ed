"""The simulator's AudioSocket() application: connects to the IVR and streams a caller's audio.

It behaves like Asterisk 22's ``app_audiosocket`` as recorded in the trace README (section 4.3
and the AudioSocket table of section 3) and as ``apps/app_audiosocket.c`` /
``res/res_audiosocket.c`` implement it:

* connect (2 s limit, like ``MAX_CONNECT_TIMEOUT_MSEC``), send the UUID frame (16 raw bytes);
* every 20 ms send the caller's next frame of 8 kHz slin: the prompt/speech queued in
  :class:`CallerAudio` in 320-byte frames (its last frame may be shorter, like the 24-byte frame
  of ``hello-world``), then frames of zeros (``transmit_silence = yes``);
* a key press is sent as ``kind 3``/``len 1``/ASCII digit when the digit **ends**; no voice
  frames are sent while the digit lasts (the ~200 ms gaps of ``audiosocket-dtmf``);
* audio frames from the server go into ``CallerAudio.heard``;
* the session ends exactly like the application:

  ==================================================  ========================  ======
  event                                               socket                    result
  ==================================================  ========================  ======
  hangup frame (``kind 0``) from the server           closed                    0
  server closes (FIN)                                 closed                    0
  the caller hangs up (the `hangup` event)            closed, no hangup frame   -1
  bad kind (DTMF, UUID, ...) or broken framing        reset (``SO_LINGER 0``)   -1
  2 s with nothing sent nor received; write failure   closed                    -1
  connect failure                                     --                        -1
  ==================================================  ========================  ======

Simplification: Asterisk decides on a bad kind from the header alone; this client decodes the
whole frame first (servers write whole frames, so the outcome is the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
import struct
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from asterisk_sim.audio import read_wav_pcm
from asterisk_sim.clock import SimClock
from ivr.protocol.audiosocket import (
    AUDIO_KINDS,
    DTMF_DIGITS,
    FRAME_BYTES,
    FRAME_SECONDS,
    AudioSocketProtocolError,
    FrameDecoder,
    Kind,
    audio_frame,
    dtmf_frame,
    uuid_frame,
)

__all__ = ["CONNECT_TIMEOUT", "IDLE_TIMEOUT", "CallerAudio", "run_audiosocket"]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 2.0  # res_audiosocket MAX_CONNECT_TIMEOUT_MSEC
IDLE_TIMEOUT = 2.0  # app_audiosocket MAX_WAIT_TIMEOUT_MSEC (simulated seconds)
WRITE_TIMEOUT = 2.0
READ_BYTES = 65536
DEFAULT_DIGIT_SECONDS = 0.1
_SILENT_FRAME = bytes(FRAME_BYTES)


@dataclass(frozen=True, slots=True)
class _Digit:
    digit: str
    at: float | None  # simulated seconds after the UUID frame; None = as soon as possible
    duration: float


class CallerAudio:
    """What one simulated caller says (PCM, DTMF) and hears on an AudioSocket session.

    Queue speech with :meth:`say` / :meth:`say_wav` (played in order, then silence) and keys
    with :meth:`press` (now, or `at` seconds after the session started). Everything the
    server plays is appended to :attr:`heard` (8 kHz s16le).
    """

    def __init__(self, pcm: bytes = b"", *, transmit_silence: bool = True) -> None:
        self.transmit_silence = transmit_silence
        self.heard = bytearray()
        self.frames_heard = 0
        self.frames_sent = 0
        self.digits_sent: list[str] = []
        self._speech: deque[bytes] = deque()
        self._digits: list[_Digit] = []
        if pcm:
            self.say(pcm)

    @classmethod
    def from_wav(cls, path: str | Path, *, transmit_silence: bool = True) -> CallerAudio:
        """A caller who says the audio of a WAV file (converted to 8 kHz mono slin)."""
        return cls(read_wav_pcm(path), transmit_silence=transmit_silence)

    def say(self, pcm: bytes) -> None:
        """Queue 8 kHz s16le PCM to speak after whatever is already queued."""
        if len(pcm) % 2:
            raise AudioSocketProtocolError(f"PCM of odd length {len(pcm)} is not 16-bit samples")
        self._speech.extend(pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES))

    def say_wav(self, path: str | Path) -> None:
        """Queue the audio of a WAV file."""
        self.say(read_wav_pcm(path))

    def press(
        self, digit: str, *, at: float | None = None, duration: float = DEFAULT_DIGIT_SECONDS
    ) -> None:
        """Press a key now, or `at` seconds after the session started, for `duration` seconds."""
        if len(digit) != 1 or digit not in DTMF_DIGITS:
            raise ValueError(f"not a DTMF digit: {digit!r}")
        if duration <= 0:
            raise ValueError(f"a digit lasts a positive time: {duration}")
        self._digits.append(_Digit(digit, at, duration))

    @property
    def speaking(self) -> bool:
        """True while queued speech has not been sent yet."""
        return bool(self._speech)

    @property
    def pending_digits(self) -> int:
        """Key presses not sent yet."""
        return len(self._digits)

    def _next_digit(self, now: float) -> _Digit | None:
        """The first key press due at simulated time `now`, removed from the schedule."""
        for index, item in enumerate(self._digits):
            if item.at is None or item.at <= now + 1e-9:
                del self._digits[index]
                return item
        return None

    def _next_voice(self) -> bytes | None:
        if self._speech:
            return self._speech.popleft()
        return _SILENT_FRAME if self.transmit_silence else None

    def _skip_voice(self) -> None:
        """A voice frame that the digit replaces (the channel keeps time, the audio is lost)."""
        if self._speech:
            self._speech.popleft()

    def _hear(self, pcm: bytes) -> None:
        self.heard += pcm
        self.frames_heard += 1


class _Outcome(enum.Enum):
    HANGUP_FRAME = "server sent a hangup frame"
    SERVER_CLOSED = "server closed the socket"
    CALLER_HANGUP = "caller hung up"
    BAD_FRAME = "server sent a frame Asterisk refuses"
    IDLE = "no activity"
    WRITE_FAILED = "write to the server failed"


_RESULT = {
    _Outcome.HANGUP_FRAME: 0,
    _Outcome.SERVER_CLOSED: 0,
    _Outcome.CALLER_HANGUP: -1,
    _Outcome.BAD_FRAME: -1,
    _Outcome.IDLE: -1,
    _Outcome.WRITE_FAILED: -1,
}


class _Session:
    """One running AudioSocket() application: a sender and a receiver sharing a clock."""

    def __init__(
        self,
        call_id: uuid.UUID,
        caller: CallerAudio,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        clock: SimClock,
    ) -> None:
        self.call_id = call_id
        self.caller = caller
        self.reader = reader
        self.writer = writer
        self.clock = clock
        self.loop = asyncio.get_running_loop()
        self.last_activity = self.loop.time()

    async def write(self, data: bytes) -> bool:
        try:
            self.writer.write(data)
            async with asyncio.timeout(WRITE_TIMEOUT):
                await self.writer.drain()
        except (OSError, TimeoutError) as err:
            logger.info("audiosocket %s: write failed: %r", self.call_id, err)
            return False
        self.last_activity = self.loop.time()
        return True

    async def send_loop(self) -> _Outcome:
        """Every 20 ms: the digit in progress, else the next voice frame; watch for idleness."""
        interval = self.clock.real(FRAME_SECONDS)
        idle = self.clock.real(IDLE_TIMEOUT)
        start = self.loop.time()
        digit: _Digit | None = None
        digit_ticks = 0
        tick = 0
        while True:
            delay = start + tick * interval - self.loop.time()
            await asyncio.sleep(max(0.0, delay))  # sleep(0) when late: catch up, but yield
            data: bytes | None = None
            if digit is None:
                digit = self.caller._next_digit(tick * FRAME_SECONDS)
                if digit is not None:
                    digit_ticks = max(1, round(digit.duration / FRAME_SECONDS))
            if digit is not None:
                self.caller._skip_voice()
                digit_ticks -= 1
                if digit_ticks == 0:
                    data = dtmf_frame(digit.digit)
                    self.caller.digits_sent.append(digit.digit)
                    digit = None
            else:
                voice = self.caller._next_voice()
                if voice is not None:
                    data = audio_frame(voice)
                    self.caller.frames_sent += 1
            if data is not None:
                if not await self.write(data):
                    return _Outcome.WRITE_FAILED
            elif digit is None and self.loop.time() - self.last_activity >= idle:
                return _Outcome.IDLE
            tick += 1

    async def receive_loop(self) -> _Outcome:
        """Decode what the server sends; the first non-audio frame decides the outcome."""
        decoder = FrameDecoder()
        try:
            while True:
                while (frame := decoder.next_frame()) is not None:
                    self.last_activity = self.loop.time()
                    if frame.kind is Kind.HANGUP:
                        return _Outcome.HANGUP_FRAME
                    if frame.kind not in AUDIO_KINDS:
                        logger.warning(
                            "audiosocket %s: received AudioSocket message other than hangup "
                            "or audio (kind 0x%02x)",
                            self.call_id,
                            frame.kind,
                        )
                        return _Outcome.BAD_FRAME
                    if frame.kind is Kind.AUDIO:
                        self.caller._hear(frame.payload)
                if decoder.ended:
                    return _Outcome.SERVER_CLOSED
                data = await self.reader.read(READ_BYTES)
                if data:
                    self.last_activity = self.loop.time()
                decoder.receive_data(data)
        except AudioSocketProtocolError as err:
            logger.warning("audiosocket %s: bad frame from the server: %s", self.call_id, err)
            return _Outcome.BAD_FRAME
        except OSError as err:
            logger.info("audiosocket %s: read failed: %r", self.call_id, err)
            return _Outcome.WRITE_FAILED

    async def close(self, *, reset: bool) -> None:
        if reset:
            sock = self.writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.writer.transport.abort()
        else:
            self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def run_audiosocket(
    host: str,
    port: int,
    call_id: uuid.UUID,
    caller: CallerAudio,
    *,
    hangup: asyncio.Event | None = None,
    clock: SimClock | None = None,
) -> int:
    """Run ``AudioSocket(<call_id>,host:port)`` for `caller`; 0 or -1 like the application.

    `hangup` is the caller hanging up (the channel goes away: no hangup frame, result -1).
    `clock` scales the 20 ms pacing and the 2 s idle limit (default: real time).
    """
    clock = clock or SimClock()
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError) as err:
        logger.warning("audiosocket %s: connect to %s:%d failed: %r", call_id, host, port, err)
        return -1
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    session = _Session(call_id, caller, reader, writer, clock)
    outcome = _Outcome.WRITE_FAILED
    tasks: dict[asyncio.Task[object], _Outcome | None] = {}
    try:
        if not await session.write(uuid_frame(call_id)):
            return -1
        tasks[asyncio.create_task(session.receive_loop())] = None
        tasks[asyncio.create_task(session.send_loop())] = None
        if hangup is not None:
            tasks[asyncio.create_task(hangup.wait())] = _Outcome.CALLER_HANGUP
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        outcome = _pick(done, tasks)
    finally:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await session.close(reset=outcome is _Outcome.BAD_FRAME)
    logger.info("audiosocket %s: ended (%s), result %d", call_id, outcome.value, _RESULT[outcome])
    return _RESULT[outcome]


def _pick(
    done: set[asyncio.Task[object]], tasks: dict[asyncio.Task[object], _Outcome | None]
) -> _Outcome:
    """The outcome of the first finished task; a receive/send outcome wins over the hangup."""
    outcomes: list[_Outcome] = []
    for task in done:
        fixed = tasks[task]
        if fixed is not None:
            outcomes.append(fixed)
            continue
        result = task.result()
        assert isinstance(result, _Outcome)
        outcomes.insert(0, result)
    return outcomes[0]
