"""Glue between the AudioSocket application and the AudioSocket client (app_audiosocket.c).

The AudioSocket client (``asterisk_sim/audiosocket_client.py``) speaks the wire protocol; this
module picks the caller audio of the call (the ``CallerAudio`` a script attached to the
channel or to its Local peer), applies an address override, forwards digits that reach the
channel meanwhile (``PlayDTMF``) as key presses, and maps the outcome to the application
result of README section 4.3: 0 when the server ended the session, -1 when the caller hung
up or the server misbehaved.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from asterisk_sim.audiosocket_client import CallerAudio, run_audiosocket
from asterisk_sim.channels import Channel
from asterisk_sim.pbx import Pbx

_log = logging.getLogger(__name__)


def caller_audio_for(ch: Channel) -> CallerAudio:
    """The CallerAudio attached to `ch` or its peer (a silent one if none)."""
    for candidate in (ch.caller_audio, ch.peer.caller_audio if ch.peer else None):
        if isinstance(candidate, CallerAudio):
            return candidate
    audio = CallerAudio()
    ch.caller_audio = audio
    return audio


async def run_audiosocket_for(
    pbx: Pbx, ch: Channel, host: str, port: int, call_id: uuid.UUID
) -> int:
    """Run one AudioSocket session for `ch`; returns the application result."""
    if ch.is_hungup:
        return -1
    override = pbx.config.audiosocket_override
    if override is not None:
        host, port = override
    caller = caller_audio_for(ch)
    hangup = asyncio.Event()

    async def watch_hangup() -> None:
        await ch.hangup_event.wait()
        hangup.set()

    async def forward_digits() -> None:
        while True:
            digit = await ch.dtmf.get()
            caller.press(digit)

    helpers = [asyncio.ensure_future(watch_hangup()), asyncio.ensure_future(forward_digits())]
    ch.reading += 1
    try:
        result = await run_audiosocket(host, port, call_id, caller, hangup=hangup, clock=pbx.clock)
    finally:
        ch.reading -= 1
        for helper in helpers:
            helper.cancel()
    if ch.is_hungup:
        return -1
    return int(result)
