"""Prompt lengths for Playback / STREAM FILE: real WAV files when present, else a table.

Lengths are in samples at 8 kHz, as res_agi reports ``endpos``. The table holds the Allison
prompts seen in the traces (``beep`` is 3404 samples: ``STREAM FILE beep`` -> ``endpos=3404``).
"""

from __future__ import annotations

import wave
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

RATE = 8000

KNOWN_SAMPLES: dict[str, int] = {
    "beep": 3404,
    "hello-world": 11200,
    "demo-congrats": 100000,
    "silence/1": 8000,
    "vm-goodbye": 6000,
    **{f"digits/{d}": 6640 for d in range(10)},
    **{f"digits/{n}": 6800 for n in (10, 20, 30, 40, 50, 60, 70, 80, 90)},
}


@dataclass(frozen=True, slots=True)
class PromptLibrary:
    """Answers "does this prompt exist, and how many samples long is it?".

    `directories` are searched for ``<name>.wav``; then the table; then, unless `strict`,
    any other name exists with `default_samples`. Names in `missing` never exist.
    """

    directories: tuple[Path, ...] = ()
    table: Mapping[str, int] = field(default_factory=lambda: dict(KNOWN_SAMPLES))
    default_samples: int = RATE
    strict: bool = False
    missing: frozenset[str] = frozenset({"no-such-prompt"})

    def samples(self, name: str) -> int | None:
        """Length in 8 kHz samples, or None if the prompt does not exist."""
        if name in self.missing or not name:
            return None
        for directory in self.directories:
            path = directory / f"{name}.wav"
            if path.is_file():
                try:
                    with wave.open(str(path), "rb") as wav:
                        frames = wav.getnframes()
                        rate = wav.getframerate() or RATE
                except (wave.Error, EOFError, OSError):
                    continue
                return frames * RATE // rate
        if name in self.table:
            return self.table[name]
        if self.strict or name.startswith("no-such"):
            return None
        return self.default_samples

    def wav_path(self, name: str) -> Path | None:
        """The WAV file for `name`, if one of the directories has it."""
        for directory in self.directories:
            path = directory / f"{name}.wav"
            if path.is_file():
                return path
        return None


def say_digits_files(digits: str) -> list[str]:
    """The prompt files SAY DIGITS plays."""
    names = {"*": "digits/star", "#": "digits/pound", "-": "digits/minus"}
    return [names.get(d, f"digits/{d}") for d in digits]


def say_number_files(number: int) -> list[str]:
    """The prompt files SAY NUMBER plays (English, up to the millions)."""
    if number < 0:
        return ["digits/minus", *say_number_files(-number)]
    if number < 20 or (number < 100 and number % 10 == 0):
        return [f"digits/{number}"]
    if number < 100:
        return [f"digits/{number - number % 10}", f"digits/{number % 10}"]
    if number < 1000:
        rest = say_number_files(number % 100) if number % 100 else []
        return [f"digits/{number // 100}", "digits/hundred", *rest]
    if number < 1_000_000:
        rest = say_number_files(number % 1000) if number % 1000 else []
        return [*say_number_files(number // 1000), "digits/thousand", *rest]
    rest = say_number_files(number % 1_000_000) if number % 1_000_000 else []
    return [*say_number_files(number // 1_000_000), "digits/million", *rest]
