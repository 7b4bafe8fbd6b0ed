"""The G.711 encoders `callcenter prompts build` writes `.ulaw` / `.alaw` prompts with."""

from __future__ import annotations

import struct
import warnings

import pytest

from asterisk_conf.sound_formats import (
    alaw_from_pcm,
    linear_to_alaw,
    linear_to_ulaw,
    ulaw_from_pcm,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop  # the reference codec (deprecated, removed in Python 3.13)
    except ImportError:  # pragma: no cover - Python 3.13+
        audioop = None  # type: ignore[assignment]

EVERY_SAMPLE = struct.pack("<65536h", *range(-32768, 32768))
NEEDS_AUDIOOP = pytest.mark.skipif(
    audioop is None, reason="audioop (the reference G.711 codec) is not in this Python"
)


@pytest.mark.parametrize(
    ("sample", "ulaw", "alaw"),
    [(0, 0xFF, 0xD5), (-1, 0x7F, 0x55), (32767, 0x80, 0xAA), (-32768, 0x00, 0x2A)],
)
def test_given_edge_samples_when_encoded_then_the_g711_bytes_asterisk_writes(
    sample: int, ulaw: int, alaw: int
) -> None:
    assert (linear_to_ulaw(sample), linear_to_alaw(sample)) == (ulaw, alaw)


@NEEDS_AUDIOOP
def test_given_every_16_bit_sample_when_a_law_encoded_then_it_matches_the_reference() -> None:
    assert alaw_from_pcm(EVERY_SAMPLE) == audioop.lin2alaw(EVERY_SAMPLE, 2)


@NEEDS_AUDIOOP
def test_given_every_mu_law_byte_when_decoded_and_encoded_again_then_it_is_unchanged() -> None:
    # 0x7F is mu-law's "negative zero": it decodes to 0, which encodes as 0xFF
    codes = bytes(b for b in range(256) if b != 0x7F)
    assert ulaw_from_pcm(audioop.ulaw2lin(codes, 2)) == codes
    assert ulaw_from_pcm(audioop.ulaw2lin(b"\x7f", 2)) == b"\xff"


def test_given_pcm_when_encoded_then_one_byte_per_sample() -> None:
    pcm = EVERY_SAMPLE[:3200]
    assert len(ulaw_from_pcm(pcm)) == len(alaw_from_pcm(pcm)) == 1600


def test_given_an_odd_number_of_bytes_when_encoded_then_refused() -> None:
    with pytest.raises(ValueError, match="even length"):
        ulaw_from_pcm(b"\x00\x01\x02")
