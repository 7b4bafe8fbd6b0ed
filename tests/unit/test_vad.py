"""The energy VAD: onset after a run of voiced frames, end after trailing quiet, hiss ignored."""

from __future__ import annotations

import math
import random
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.adapters.vad import EnergyVad, VadEvent, frame_level_db, zero_crossing_rate

SILENT = bytes(320)


def tone(amplitude: float, hz: float = 200.0, samples: int = 160) -> bytes:
    """A 20 ms sine frame at `amplitude` (0..1 of full scale): low ZCR, like a vowel."""
    values = array(
        "h",
        (round(amplitude * 32767 * math.sin(2 * math.pi * hz * n / 8000)) for n in range(samples)),
    )
    return values.tobytes()


def hiss(amplitude: float, seed: int) -> bytes:
    """A 20 ms frame of white noise (ZCR near 0.5)."""
    rng = random.Random(seed)
    values = array("h", (round(amplitude * 32767 * rng.uniform(-1, 1)) for _ in range(160)))
    return values.tobytes()


def run(vad: EnergyVad, frames: list[bytes]) -> list[tuple[int, VadEvent]]:
    return [(i, e) for i, f in enumerate(frames) if (e := vad.process(f)) is not None]


def test_digital_silence_has_no_level_and_full_scale_is_near_zero_db() -> None:
    assert frame_level_db(SILENT) == -math.inf
    assert frame_level_db(b"") == -math.inf
    assert frame_level_db(tone(1.0)) == pytest.approx(-3.0, abs=0.1)  # a sine's RMS is -3 dB
    assert frame_level_db(tone(0.01)) == pytest.approx(-43.0, abs=0.2)


def test_a_low_tone_crosses_zero_rarely_and_hiss_often() -> None:
    assert zero_crossing_rate(tone(0.5, hz=200)) < 0.1
    assert zero_crossing_rate(hiss(0.5, seed=1)) > 0.35
    assert zero_crossing_rate(b"\x01\x00") == 0.0


def test_given_silence_when_a_tone_starts_then_onset_after_the_onset_time() -> None:
    vad = EnergyVad(onset_ms=60, end_silence_ms=200)

    events = run(vad, [SILENT] * 5 + [tone(0.3)] * 10)

    assert events == [(7, VadEvent.ONSET)]  # the third loud frame
    assert vad.speaking


def test_given_speech_when_quiet_lasts_the_end_silence_then_end() -> None:
    vad = EnergyVad(onset_ms=40, end_silence_ms=100)

    events = run(vad, [tone(0.3)] * 4 + [SILENT] * 4 + [tone(0.3)] + [SILENT] * 6)

    # a 4-frame pause (80 ms) does not end it; 5 quiet frames (100 ms) do
    assert events == [(1, VadEvent.ONSET), (13, VadEvent.END)]
    assert not vad.speaking


def test_given_a_click_shorter_than_the_onset_then_no_speech() -> None:
    vad = EnergyVad(onset_ms=60)

    assert run(vad, [SILENT, tone(0.8), tone(0.8), SILENT, tone(0.8), SILENT]) == []


def test_given_hiss_above_the_threshold_then_it_starts_no_speech() -> None:
    vad = EnergyVad(onset_ms=60)

    assert run(vad, [hiss(0.3, seed=n) for n in range(50)]) == []


def test_given_speech_when_hissy_fricatives_follow_then_they_keep_it_going() -> None:
    vad = EnergyVad(onset_ms=40, end_silence_ms=60)

    frames = [tone(0.3)] * 2 + [hiss(0.3, seed=n) for n in range(10)] + [SILENT] * 3

    assert run(vad, frames) == [(1, VadEvent.ONSET), (14, VadEvent.END)]


def test_given_quiet_audio_below_the_threshold_then_no_speech() -> None:
    vad = EnergyVad(threshold_db=-40.0)

    assert run(vad, [tone(0.005)] * 20) == []  # about -49 dBFS


def test_a_short_tail_frame_counts_as_a_frame() -> None:
    vad = EnergyVad(onset_ms=40)

    assert run(vad, [tone(0.3), tone(0.3, samples=12)]) == [(1, VadEvent.ONSET)]


def test_times_shorter_than_a_frame_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one frame"):
        EnergyVad(onset_ms=10)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(["quiet", "voice", "hiss"]), max_size=80))
def test_onsets_and_ends_always_alternate_starting_with_an_onset(kinds: list[str]) -> None:
    frames = {"quiet": SILENT, "voice": tone(0.3), "hiss": hiss(0.3, seed=7)}
    vad = EnergyVad(onset_ms=40, end_silence_ms=60)

    events = [e for _, e in run(vad, [frames[k] for k in kinds])]

    expected = [VadEvent.ONSET, VadEvent.END] * len(events)
    assert events == expected[: len(events)]
    assert vad.speaking == (len(events) % 2 == 1)
