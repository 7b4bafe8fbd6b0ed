"""The prompt renderer with the real espeak-ng: format, cache, concurrency and failures."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import wave
from pathlib import Path

import pytest

from ivr.adapters.prompt_renderer import EspeakMissingError, PromptRenderer, PromptRenderError

pytestmark = pytest.mark.timeout(30)

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None and not os.environ.get("CI"),
    reason="espeak-ng is not installed (apt-get install espeak-ng; .ci/run installs it)",
)


def wav_format(path: Path) -> tuple[int, int, int, float]:
    with wave.open(str(path), "rb") as wav:
        seconds = wav.getnframes() / wav.getframerate()
        return wav.getframerate(), wav.getnchannels(), wav.getsampwidth(), seconds


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def fake_espeak(tmp_path: Path, script: str) -> str:
    """A stand-in program at a real path (for failures espeak-ng itself cannot be made to show)."""
    path = tmp_path / "fake-espeak"
    path.write_text(f"#!/bin/sh\n{script}\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


@needs_espeak
async def test_given_text_when_rendered_then_8khz_mono_16bit_wav_in_the_cache(
    tmp_path: Path,
) -> None:
    renderer = PromptRenderer(tmp_path / "cache")

    path = await renderer.render("Welcome to Example Company.", "en")

    assert path.parent == tmp_path / "cache"
    assert path.suffix == ".wav"
    rate, channels, width, seconds = wav_format(path)
    assert (rate, channels, width) == (8000, 1, 2)
    assert seconds > 0  # speech, not an empty file
    assert files(path.parent) == [path.name]  # no temporary files left


@needs_espeak
async def test_given_the_same_text_twice_then_the_second_render_is_a_cache_hit(
    tmp_path: Path,
) -> None:
    renderer = PromptRenderer(tmp_path)
    first = await renderer.render("Goodbye.", "en")
    modified = first.stat().st_mtime_ns

    second = await renderer.render("Goodbye.", "en")

    assert second == first
    assert renderer.renders == 1
    assert first.stat().st_mtime_ns == modified
    assert PromptRenderer(tmp_path).cached_path("Goodbye.", "en") == first  # survives restarts


@needs_espeak
async def test_given_another_language_then_another_file(tmp_path: Path) -> None:
    renderer = PromptRenderer(tmp_path)

    english = await renderer.render("Merci", "en")
    french = await renderer.render("Merci", "fr")

    assert english != french
    assert renderer.renders == 2


@needs_espeak
async def test_given_concurrent_renders_of_one_text_then_espeak_runs_once(tmp_path: Path) -> None:
    renderer = PromptRenderer(tmp_path)

    paths = await asyncio.gather(*(renderer.render("One moment please.", "en") for _ in range(5)))

    assert len(set(paths)) == 1
    assert renderer.renders == 1


@needs_espeak
async def test_given_text_that_looks_like_an_option_then_it_is_spoken_not_parsed(
    tmp_path: Path,
) -> None:
    renderer = PromptRenderer(tmp_path)

    path = await renderer.render("--help -v xx", "en")

    assert wav_format(path)[3] > 0.3


@needs_espeak
async def test_given_an_unknown_voice_then_a_render_error_names_it(tmp_path: Path) -> None:
    renderer = PromptRenderer(tmp_path)

    with pytest.raises(PromptRenderError, match="'xx-nope'"):
        await renderer.render("Hello", "xx-nope")
    assert files(tmp_path) == []


@needs_espeak
async def test_given_a_configured_voice_then_it_is_used_for_the_language(tmp_path: Path) -> None:
    renderer = PromptRenderer(tmp_path, voices={"en": "en-us"})

    assert renderer.voice_for("en") == "en-us"
    assert renderer.voice_for("fr") == "fr"
    assert renderer.voice_for("pt_BR") == "pt-BR"
    assert renderer.cached_path("Hi", "en") != PromptRenderer(tmp_path).cached_path("Hi", "en")
    assert wav_format(await renderer.render("Hi", "en"))[0] == 8000


async def test_given_no_espeak_program_then_the_error_names_the_package(tmp_path: Path) -> None:
    renderer = PromptRenderer(tmp_path, espeak=str(tmp_path / "no-such-espeak-ng"))

    with pytest.raises(EspeakMissingError, match="apt-get install espeak-ng"):
        await renderer.render("Hello", "en")


async def test_given_espeak_hangs_then_the_render_times_out_and_the_process_is_killed(
    tmp_path: Path,
) -> None:
    renderer = PromptRenderer(tmp_path, espeak=fake_espeak(tmp_path, "exec sleep 30"), timeout=0.3)

    with pytest.raises(PromptRenderError, match=r"did not finish within 0\.3 s"):
        await renderer.render("Hello", "en")


async def test_given_espeak_writes_no_audio_then_the_render_fails(tmp_path: Path) -> None:
    renderer = PromptRenderer(tmp_path / "cache", espeak=fake_espeak(tmp_path, "cat >/dev/null"))

    with pytest.raises(PromptRenderError):
        await renderer.render("Hello", "en")
    assert files(tmp_path / "cache") == []
