"""The sound file formats Asterisk plays prompts from, as pure encoders of 8 kHz 16-bit PCM.

Asterisk keeps one prompt in several formats under one name (`welcome.wav`, `welcome.ulaw`,
`welcome.alaw`) and plays the one that costs least to translate to the channel's codec
(`main/file.c`, `ast_openstream`): G.711 files play on G.711 calls (the trunk and desk phones
here: `allow = ulaw,alaw`) with no transcoding, and the WAV (format_wav: 8 kHz signed linear)
serves everything else. `.ulaw` and `.alaw` are headerless G.711 at 8 kHz (format_pcm).

The encoders follow ITU-T G.711 as Asterisk's own tables do (`main/ulaw.c`, `main/alaw.c`):
mu-law with bias 0x84 and clip 32635, A-law on the 13-bit magnitude with even bits inverted.
"""

from __future__ import annotations

import sys
from array import array
from functools import cache

__all__ = ["G711_FORMATS", "alaw_from_pcm", "linear_to_alaw", "linear_to_ulaw", "ulaw_from_pcm"]

_ULAW_BIAS = 0x84
_ULAW_CLIP = 32635
_ALAW_SEGMENT_ENDS = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def linear_to_ulaw(sample: int) -> int:
    """One signed 16-bit sample as a G.711 mu-law byte."""
    sign = 0x80 if sample < 0 else 0
    magnitude = min(-sample if sign else sample, _ULAW_CLIP) + _ULAW_BIAS
    exponent = max(magnitude.bit_length() - 8, 0)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def linear_to_alaw(sample: int) -> int:
    """One signed 16-bit sample as a G.711 A-law byte."""
    value = sample >> 3
    if value >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        value = -value - 1
    segment = next((i for i, end in enumerate(_ALAW_SEGMENT_ENDS) if value <= end), 8)
    if segment >= 8:
        return 0x7F ^ mask
    shift = 1 if segment < 2 else segment
    return ((segment << 4) | ((value >> shift) & 0x0F)) ^ mask


@cache
def _table(law: str) -> bytes:
    """The encoding of every 16-bit sample, indexed by the sample's unsigned bit pattern."""
    encode = linear_to_ulaw if law == "ulaw" else linear_to_alaw
    return bytes(encode(i - 65536 if i >= 32768 else i) for i in range(65536))


def _encode(pcm: bytes, law: str) -> bytes:
    if len(pcm) % 2:
        raise ValueError(f"PCM of {len(pcm)} bytes: 16-bit samples need an even length")
    samples = array("H", pcm)
    if sys.byteorder == "big":
        samples.byteswap()  # the PCM is little-endian
    table = _table(law)
    return bytes(table[s] for s in samples)


def ulaw_from_pcm(pcm: bytes) -> bytes:
    """8 kHz signed 16-bit little-endian PCM as headerless mu-law (Asterisk's `.ulaw`)."""
    return _encode(pcm, "ulaw")


def alaw_from_pcm(pcm: bytes) -> bytes:
    """8 kHz signed 16-bit little-endian PCM as headerless A-law (Asterisk's `.alaw`)."""
    return _encode(pcm, "alaw")


# file extension -> encoder, next to the `.wav` the prompt renderer writes
G711_FORMATS = {"ulaw": ulaw_from_pcm, "alaw": alaw_from_pcm}
