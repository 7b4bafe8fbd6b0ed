"""The Asterisk core sound prompts a flow may name without shipping the file itself.

A short list of files from Asterisk's core-sounds package (``/var/lib/asterisk/sounds/<lang>/``)
that every installation has. Any other sound name must exist as a file in one of the sound
directories given to the checker, or be a text prompt defined in the flow.
"""

from __future__ import annotations

KNOWN_ASTERISK_SOUNDS: frozenset[str] = frozenset(
    {
        "agent-pass",
        "auth-thankyou",
        "beep",
        "demo-congrats",
        "demo-thanks",
        "goodbye",
        "hello-world",
        "invalid",
        "pbx-invalid",
        "please-try-again",
        "pls-hold-while-try",
        "queue-thankyou",
        "queue-youarenext",
        "transfer",
        "tt-monkeys",
        "tt-weasels",
        "vm-goodbye",
        "vm-intro",
        *(f"digits/{n}" for n in range(10)),
        *(f"silence/{n}" for n in range(1, 11)),
    }
)

#: File extensions Asterisk can play a prompt from.
SOUND_EXTENSIONS: frozenset[str] = frozenset(
    {"wav", "WAV", "gsm", "ulaw", "alaw", "sln", "sln16", "g722", "g729", "ogg", "siren7"}
)
