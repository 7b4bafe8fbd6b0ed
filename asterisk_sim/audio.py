"""PCM helpers for the simulator: WAV to 8 kHz slin and back, tones and silence.

Everything here is the audio format of AudioSocket's kind 0x10 and of the Allison prompts in the
traces (README section 4.3 and 4.5): signed 16-bit little-endian, mono, 8000 Hz. Conversion is
pure Python (no ``audioop``, which Python 3.13 removed): 8-bit WAVs are widened, multi-channel
WAVs are averaged to mono, other rates are resampled by linear interpolation. Anything the
``wave`` module cannot read as integer PCM (mu-law, float, 24/32-bit) is refused with
:class:`AudioFormatError` naming the file and the format found.
"""

from __future__ import annotations

import math
import sys
import wave
from array import array
from pathlib import Path

from asterisk_sim.errors import SimError

__all__ = [
    "SAMPLE_RATE",
    "AudioFormatError",
    "pcm_seconds",
    "read_wav_pcm",
    "silence",
    "tone",
    "write_wav",
]

SAMPLE_RATE = 8000
_BIG_ENDIAN = sys.byteorder == "big"


class AudioFormatError(SimError):
    """A WAV file is not integer PCM the simulator can turn into 8 kHz slin."""

    error_id = "asterisk-sim-audio-format"


def _to_bytes(samples: array[int]) -> bytes:
    if _BIG_ENDIAN:
        samples = array("h", samples)
        samples.byteswap()
    return samples.tobytes()


def _from_bytes(pcm: bytes) -> array[int]:
    if len(pcm) % 2:
        raise AudioFormatError(f"16-bit PCM must have an even length, got {len(pcm)} bytes")
    samples = array("h")
    samples.frombytes(pcm)
    if _BIG_ENDIAN:
        samples.byteswap()
    return samples


def _resample(samples: array[int], rate: int) -> array[int]:
    """Linear interpolation from `rate` to 8 kHz (good enough for prompts and tests)."""
    if rate == SAMPLE_RATE or not samples:
        return samples
    count = max(1, round(len(samples) * SAMPLE_RATE / rate))
    step = rate / SAMPLE_RATE
    last = len(samples) - 1
    out = array("h", bytes(2 * count))
    for i in range(count):
        pos = i * step
        j = int(pos)
        if j >= last:
            out[i] = samples[last]
            continue
        frac = pos - j
        out[i] = round(samples[j] + (samples[j + 1] - samples[j]) * frac)
    return out


def read_wav_pcm(path: str | Path) -> bytes:
    """The audio of a WAV file as 8 kHz mono s16le bytes (converted if needed)."""
    try:
        with wave.open(str(path), "rb") as wav:
            channels = wav.getnchannels()
            width = wav.getsampwidth()
            rate = wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as err:
        raise AudioFormatError(f"{path}: not a PCM WAV file the simulator can read: {err}") from err
    if width == 2:
        samples = _from_bytes(raw)
    elif width == 1:  # unsigned 8-bit
        samples = array("h", ((b - 128) << 8 for b in raw))
    else:
        raise AudioFormatError(
            f"{path}: {8 * width}-bit samples; only 8-bit and 16-bit PCM are supported"
        )
    if channels > 1:
        samples = array(
            "h",
            (
                round(sum(samples[i : i + channels]) / channels)
                for i in range(0, len(samples) - channels + 1, channels)
            ),
        )
    return _to_bytes(_resample(samples, rate))


def write_wav(path: str | Path, pcm: bytes, *, rate: int = SAMPLE_RATE) -> None:
    """Write s16le mono PCM as a RIFF/WAVE file (44-byte header, like MixMonitor's ``.wav``)."""
    if len(pcm) % 2:
        raise AudioFormatError(f"16-bit PCM must have an even length, got {len(pcm)} bytes")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)


def tone(hz: float, seconds: float, *, amplitude: float = 0.25) -> bytes:
    """A sine tone as 8 kHz s16le; the default level reproduces the traces' 440 Hz tone.

    Sample n is ``int(amplitude * 32767 * sin(2*pi*hz*n/8000))`` (truncated toward zero): with
    ``tone(440, 2.0)`` that is byte-for-byte the 100 frames our server sent in
    ``audiosocket-audio.audiosocket.out.bin``.
    """
    if not 0.0 <= amplitude <= 1.0:
        raise ValueError(f"amplitude must be within 0..1: {amplitude}")
    count = round(max(0.0, seconds) * SAMPLE_RATE)
    level = amplitude * 32767
    w = 2 * math.pi * hz / SAMPLE_RATE
    return _to_bytes(array("h", (int(level * math.sin(w * n)) for n in range(count))))


def silence(seconds: float) -> bytes:
    """Digital silence (zeros) as 8 kHz s16le, like ``transmit_silence = yes`` sends."""
    return bytes(2 * round(max(0.0, seconds) * SAMPLE_RATE))


def pcm_seconds(pcm: bytes) -> float:
    """Duration of 8 kHz s16le PCM in seconds."""
    return len(pcm) / (2 * SAMPLE_RATE)
