"""MixMonitor in the simulator: the AMI/dialplan events, and optionally a WAV of silence.

Events as in ``ami-actions.ami.jsonl``: ``VarSet MIXMONITOR_FILENAME`` (a relative file goes to
``<spool>/monitor/``), ``MixMonitorStart``, ``MixMonitorMute`` (``Direction``, ``State``) and
``MixMonitorStop``. With ``write_recordings`` the file is written at stop as 8 kHz 16-bit mono
PCM (the simulator has no mixed audio, so it holds silence of the recorded length).
"""

from __future__ import annotations

import contextlib
import wave
from dataclasses import dataclass
from pathlib import Path

from asterisk_sim import event_templates as ev
from asterisk_sim.channels import Channel
from asterisk_sim.pbx import Pbx
from asterisk_sim.prompts import RATE


@dataclass
class MixMonitor:
    """A running recording on one channel."""

    path: Path
    started: float


def start_mixmonitor(pbx: Pbx, ch: Channel, file: str, options: str = "") -> None:
    path = Path(file)
    if not path.is_absolute():
        path = pbx.config.spool_dir / "monitor" / path
    ch.mixmonitor = MixMonitor(path, pbx.clock.now())
    pbx.set_var(ch, "MIXMONITOR_FILENAME", str(path))
    pbx.emit(ev.channel_event("MixMonitorStart", ch))


def mute_mixmonitor(pbx: Pbx, ch: Channel, direction: str, state: bool) -> None:
    pbx.emit(
        ev.channel_event(
            "MixMonitorMute", ch, ("Direction", direction), ("State", "1" if state else "0")
        )
    )


def stop_mixmonitor(pbx: Pbx, ch: Channel) -> bool:
    """Stop the recording on `ch`; False if none was running."""
    monitor = ch.mixmonitor
    if not isinstance(monitor, MixMonitor):
        return False
    ch.mixmonitor = None
    pbx.emit(ev.channel_event("MixMonitorStop", ch))
    if pbx.config.write_recordings:
        seconds = max(0.0, pbx.clock.now() - monitor.started)
        with contextlib.suppress(OSError):
            monitor.path.parent.mkdir(parents=True, exist_ok=True)
            with wave.open(str(monitor.path), "wb") as wav:
                wav.setnchannels(1)
                wav.setsampwidth(2)
                wav.setframerate(RATE)
                wav.writeframes(b"\x00\x00" * int(seconds * RATE))
    return True
