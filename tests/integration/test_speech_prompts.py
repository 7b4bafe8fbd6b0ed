"""Speech prompts: WAV paths and sound names to 8 kHz slin, and refusals that name the file."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from ivr.adapters.speech import PromptAudioError, load_prompt_pcm
from ivr.domain.commands import SoundPrompt, TextPrompt

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "speech"


def pcm_of(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        return wav.readframes(wav.getnframes())


async def test_given_a_path_and_sound_names_then_their_audio_is_joined_in_order() -> None:
    pcm = await load_prompt_pcm(
        [FIXTURES / "beep.wav", SoundPrompt("ne"), SoundPrompt("aniyo.wav")],
        "ko",
        sounds_dir=FIXTURES,
    )

    expected = pcm_of(FIXTURES / "beep.wav") + pcm_of(FIXTURES / "ne.wav")
    assert pcm == expected + pcm_of(FIXTURES / "aniyo.wav")


async def test_given_a_language_folder_then_it_wins_over_the_plain_sound(tmp_path: Path) -> None:
    (tmp_path / "ko").mkdir()
    (tmp_path / "ko" / "hello.sln").write_bytes(b"\x01\x00\x02\x00\x03")  # odd tail dropped
    (tmp_path / "hello.sln").write_bytes(b"\x09\x00")

    assert await load_prompt_pcm([SoundPrompt("hello")], "ko", sounds_dir=tmp_path) == (
        b"\x01\x00\x02\x00"
    )
    assert await load_prompt_pcm([SoundPrompt("hello")], "en", sounds_dir=tmp_path) == b"\x09\x00"


async def test_given_a_missing_sound_then_the_error_names_it() -> None:
    with pytest.raises(PromptAudioError, match="'no-such-prompt'"):
        await load_prompt_pcm([SoundPrompt("no-such-prompt")], "ko", sounds_dir=FIXTURES)


async def test_given_a_wav_that_is_not_8khz_mono_16_bit_then_it_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wide.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(bytes(320))

    with pytest.raises(PromptAudioError, match="16000 Hz"):
        await load_prompt_pcm([path], "ko")


async def test_given_a_text_prompt_without_a_renderer_then_it_is_refused() -> None:
    with pytest.raises(PromptAudioError, match="no prompt renderer"):
        await load_prompt_pcm([TextPrompt("안녕하세요", "ko")], "ko")
