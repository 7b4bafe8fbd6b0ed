"""Scripted callers and agents for the simulator (what a human would do on the phone).

A :class:`CallerScript` runs on the caller's half (``;1``) of an originated Local call. Its
steps wait for the IVR to start a reading command (an ``AGIExecStart`` of STREAM FILE, GET
DATA, GET OPTION, WAIT FOR DIGIT, SAY ..., or a Playback/Background/Read priority) or for a
time, press keys (injected like AMI ``PlayDTMF Receive=true`` on the IVR half ``;2``, so they
only count while a reading command runs, as on a real Asterisk), speak a WAV (for AudioSocket)
or hang up. An :class:`AgentScript` compiles to a small dialplan extension (Ringing, Wait,
Answer, Wait, Hangup; or Busy), so agents produce the same events as the trace agents.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asterisk_sim.audiosocket_client import CallerAudio
from asterisk_sim.channels import Channel
from asterisk_sim.pbx import Pbx

_log = logging.getLogger(__name__)

READING_COMMANDS = (
    "STREAM FILE",
    "GET DATA",
    "GET OPTION",
    "WAIT FOR DIGIT",
    "SAY ",
    "EXEC PLAYBACK",
    "EXEC BACKGROUND",
    "EXEC READ",
    "RECORD FILE",
)
READING_APPS = ("playback", "background", "read")


@dataclass(frozen=True, slots=True)
class WaitForPrompt:
    """Wait until the IVR starts a reading command (whose text contains `contains`, if set);
    after `timeout` simulated seconds without one the caller gives up and hangs up."""

    contains: str | None = None
    timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class Pause:
    """Do nothing (stay silent) for `seconds`."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Press:
    """Press `digits`, the first after `delay` seconds, then one every `gap` seconds."""

    digits: str
    delay: float = 0.6
    gap: float = 0.3
    duration_ms: int = 100


@dataclass(frozen=True, slots=True)
class Speak:
    """Say the audio of a WAV file (heard on an AudioSocket session)."""

    wav: Path


@dataclass(frozen=True, slots=True)
class HangUp:
    """Hang up the caller's side (like AMI ``Hangup`` of ``;1`` without a cause)."""


@dataclass(frozen=True, slots=True)
class StayOnLine:
    """Stay on the line until the IVR hangs up (the default ending)."""


Step = WaitForPrompt | Pause | Press | Speak | HangUp | StayOnLine


@dataclass
class CallerScript:
    """A caller's behaviour as a list of steps."""

    steps: Sequence[Step] = ()
    audio: CallerAudio = field(default_factory=CallerAudio)


def _is_reading(headers: list[tuple[str, str]], channel: str, contains: str | None) -> bool:
    values = dict(headers)
    if values.get("Channel") != channel:
        return False
    event = values.get("Event")
    if event == "AGIExecStart":
        text = values.get("Command", "")
        upper = text.upper()
        hit = upper.startswith(READING_COMMANDS)
    elif event == "Newexten":
        text = values.get("AppData", "")
        hit = values.get("Application", "").lower() in READING_APPS
    else:
        return False
    return hit and (contains is None or contains in text)


class CallerRun:
    """Executes a CallerScript on a live call."""

    def __init__(self, pbx: Pbx, script: CallerScript) -> None:
        self.pbx = pbx
        self.script = script
        self.dtmf_sent: list[str] = []
        self._prompts: asyncio.Queue[None] = asyncio.Queue()
        self._unsubscribe: Callable[[], None] = lambda: None
        self.last_prompt: dict[str, str] = {}

    def watch(self, two: Channel) -> None:
        """Start counting reading commands on the IVR half."""

        def listener(headers: list[tuple[str, str]]) -> None:
            if _is_reading(headers, two.name, None):
                self._prompts.put_nowait(None)
                self.last_prompt = dict(headers)

        self._unsubscribe = self.pbx.bus.subscribe(listener)

    async def run(self, one: Channel) -> None:
        """Play the steps on the caller side ``one``; keeps the line until a hangup."""
        two = one.peer
        one.caller_audio = self.script.audio
        if two is not None:
            two.caller_audio = self.script.audio
        try:
            for step in self.script.steps:
                if one.is_hungup:
                    return
                if isinstance(step, WaitForPrompt):
                    try:
                        await self._wait_prompt(step)
                    except TimeoutError:
                        # A caller left waiting for a prompt that never comes gives up.
                        _log.info(
                            "caller on %s heard no prompt in %gs: hangs up", one.name, step.timeout
                        )
                        self.pbx.soft_hangup(one, event_cause=None, cause=None)
                        return
                elif isinstance(step, Pause):
                    if not await self.pbx.wait(one, step.seconds):
                        return
                elif isinstance(step, Press) and two is not None:
                    await self._press(one, two, step)
                elif isinstance(step, Speak):
                    self.script.audio.say_wav(step.wav)
                elif isinstance(step, HangUp):
                    self.pbx.soft_hangup(one, event_cause=None, cause=None)
                    return
                elif isinstance(step, StayOnLine):
                    break
            await self.pbx.wait(one, 24 * 3600.0)
        finally:
            self._unsubscribe()

    async def _wait_prompt(self, step: WaitForPrompt) -> None:
        while True:
            await asyncio.wait_for(self._prompts.get(), self.pbx.clock.real(step.timeout))
            if step.contains is None or step.contains in str(self.last_prompt):
                return

    async def _press(self, one: Channel, two: Channel, step: Press) -> None:
        for index, digit in enumerate(step.digits):
            wait = step.delay if index == 0 else step.gap
            if not await self.pbx.wait(one, wait) or two.gone:
                return
            self.dtmf_sent.append(digit)
            await self.pbx.play_dtmf(two, digit, step.duration_ms, receive=True)


@dataclass(frozen=True, slots=True)
class AgentScript:
    """An agent phone: answers after `answer_after` s (None: never), talks, or is busy."""

    answer_after: float | None = 0.0
    talk_for: float = 3.0
    busy: bool = False

    def dialplan(self, exten: str, context: str) -> str:
        """The extension that plays this agent, as extensions.conf text."""
        lines = [f"[{context}]", f"exten => {exten},1,NoOp(simulated agent {exten})"]
        if self.busy:
            lines.append(" same => n,Busy(10)")
        elif self.answer_after is None:
            lines += [" same => n,Ringing()", " same => n,Wait(3600)", " same => n,Hangup()"]
        else:
            if self.answer_after > 0:
                lines += [" same => n,Ringing()", f" same => n,Wait({self.answer_after:g})"]
            lines += [
                " same => n,Answer()",
                f" same => n,Wait({self.talk_for:g})",
                " same => n,Hangup()",
            ]
        return "\n".join(lines) + "\n"
