"""Energy-based voice activity detection over 20 ms frames of 8 kHz slin (pure, no I/O).

Theory of operation
-------------------

AudioSocket delivers the caller's audio as 320-byte frames of signed 16-bit little-endian mono
PCM at 8 kHz, one every 20 ms, and frames of zeros while the caller is silent
(``tests/fixtures/asterisk-traces/README.md`` section 4.3). The speech adapter needs two facts
from that stream, quickly and cheaply: *the caller started talking* (stop the prompt: barge-in)
and *the caller stopped talking* (end of the utterance: ask the recogniser for its result).

Each frame's level is its RMS in dBFS (0 dBFS = full scale, digital silence = ``-inf``), and
its zero-crossing rate (ZCR) the share of neighbouring samples that change sign. A frame is
*loud* when its level is at least ``threshold_db``; it is *voiced* when it is loud and its ZCR
is at most ``max_onset_zcr``. Voiced speech (vowels, nasals) crosses zero far less often than
hiss: the espeak-ng Korean fixtures stay below 0.35 while white noise sits near 0.5. The
detector is a two-state machine with hysteresis in time:

=========  ==============================================  ==========  ================
state      input                                           next        event
=========  ==============================================  ==========  ================
SILENCE    ``onset_frames`` voiced frames in a row         SPEECH      ``ONSET``
SILENCE    any other frame                                 SILENCE     (run reset)
SPEECH     ``end_frames`` quiet frames in a row            SILENCE     ``END``
SPEECH     a loud frame (voiced or not: fricatives)        SPEECH      (run reset)
=========  ==============================================  ==========  ================

Requiring a short run of voiced frames keeps clicks and line hiss from cutting the prompt;
requiring a long run of quiet ones keeps the pauses inside a word or between two words from
ending the utterance. Frames shorter than 20 ms (a prompt's tail) count as frames all the same.
"""

from __future__ import annotations

import itertools
import math
import sys
from array import array
from enum import StrEnum

__all__ = ["EnergyVad", "VadEvent", "frame_level_db", "zero_crossing_rate"]

_BIG_ENDIAN = sys.byteorder == "big"
FULL_SCALE = 32768.0
FRAME_MS = 20


class VadEvent(StrEnum):
    """What a frame changed: speech began, or speech ended."""

    ONSET = "onset"
    END = "end"


def _samples(pcm: bytes) -> array[int]:
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if _BIG_ENDIAN:
        samples.byteswap()
    return samples


def frame_level_db(pcm: bytes) -> float:
    """RMS level of 16-bit little-endian PCM in dBFS; ``-inf`` for silence or no samples."""
    samples = _samples(pcm)
    if not samples:
        return -math.inf
    energy = sum(s * s for s in samples)
    if energy == 0:
        return -math.inf
    rms = math.sqrt(energy / len(samples))
    return 20.0 * math.log10(rms / FULL_SCALE)


def zero_crossing_rate(pcm: bytes) -> float:
    """Share of neighbouring sample pairs of 16-bit little-endian PCM that change sign (0..1)."""
    samples = _samples(pcm)
    if len(samples) < 2:
        return 0.0
    crossings = sum(1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0))
    return crossings / (len(samples) - 1)


class EnergyVad:
    """Feed 20 ms frames with :meth:`process`; it returns ``ONSET`` / ``END`` at the changes."""

    __slots__ = (
        "_end_frames",
        "_max_onset_zcr",
        "_onset_frames",
        "_quiet_run",
        "_speaking",
        "_voiced_run",
        "frames",
        "speech_frames",
        "threshold_db",
    )

    def __init__(
        self,
        *,
        threshold_db: float = -40.0,
        onset_ms: int = 60,
        end_silence_ms: int = 700,
        max_onset_zcr: float = 0.35,
    ) -> None:
        if onset_ms < FRAME_MS or end_silence_ms < FRAME_MS:
            raise ValueError(
                f"onset_ms and end_silence_ms must be at least one frame ({FRAME_MS} ms): "
                f"{onset_ms}, {end_silence_ms}"
            )
        self.threshold_db = threshold_db
        self._max_onset_zcr = max_onset_zcr
        self._onset_frames = -(-onset_ms // FRAME_MS)
        self._end_frames = -(-end_silence_ms // FRAME_MS)
        self._speaking = False
        self._voiced_run = 0
        self._quiet_run = 0
        self.frames = 0  # frames processed
        self.speech_frames = 0  # frames processed while in the SPEECH state

    @property
    def speaking(self) -> bool:
        """True between an ``ONSET`` and the following ``END``."""
        return self._speaking

    def process(self, pcm: bytes) -> VadEvent | None:
        """Take one frame; the event it causes, if any."""
        self.frames += 1
        loud = frame_level_db(pcm) >= self.threshold_db
        if self._speaking:
            self.speech_frames += 1
            if loud:
                self._quiet_run = 0
                return None
            self._quiet_run += 1
            if self._quiet_run >= self._end_frames:
                self._speaking = False
                self._quiet_run = 0
                self._voiced_run = 0
                return VadEvent.END
            return None
        if not loud or zero_crossing_rate(pcm) > self._max_onset_zcr:
            self._voiced_run = 0
            return None
        self._voiced_run += 1
        if self._voiced_run >= self._onset_frames:
            self._speaking = True
            self._voiced_run = 0
            self._quiet_run = 0
            self.speech_frames += 1
            return VadEvent.ONSET
        return None
