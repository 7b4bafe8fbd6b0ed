"""The FastAGI route that runs an IVR flow: ``IvrSession`` commands in, AGI commands out.

Theory of operation. Asterisk runs ``AGI(agi://host:4573/ivr/<flow>)``; the FastAGI server
hands us an ``AgiSession``. We build a ``CallInfo`` from the AGI header block (call id = the
call's ``Linkedid``, read with ``GET FULL VARIABLE ${CHANNEL(linkedid)}``, else
``agi_uniqueid``; caller number E.164-ish; channel language), ask the customer directory who
is calling, start the pure ``IvrSession`` and loop: run the returned commands in order, feed the
reply of the last reply-expecting one back as one event, until the session has ended. The AGI
mapping follows section 4.2 of ``tests/fixtures/asterisk-traces/README.md``:

* ``Play`` -> ``STREAM FILE <name> "<interruptible digits>"``, one per prompt; a digit
  (``result`` = its ASCII code) stops the list: ``PromptFinished(interrupted_by=digit)``.
  ``TextPrompt`` s are rendered by the prompt renderer and played by absolute path without
  extension; sound names pass through. A prompt that cannot be rendered is skipped (logged).
* ``ReadDigits`` -> earlier prompts as ``STREAM FILE`` interruptible by any key, the last one
  as ``GET DATA <prompt> <timeout> <max>`` (``#`` ends input; ``(timeout)`` -> ``timed_out``).
  GET DATA knows no other terminator, so a ``*`` terminator (or a digit that cut an earlier
  prompt short) is read with a loop of ``WAIT FOR DIGIT <timeout>``: digits pressed in the few
  milliseconds between two of those commands are lost, as they are between any two commands.
* ``result=-1`` from STREAM FILE or GET DATA means a hang-up *or* a missing prompt (traces:
  ``ivr-missing-prompt``); ``CHANNEL STATUS`` tells them apart (``511`` when hung up). A
  missing prompt is logged and skipped.
* ``ListenSpeech`` -> the ``SpeechPort`` when one is configured. Without one the step turns
  into keypad input: the prompts, then "press 1 for <word 1>, ..." read as ``GET DATA``; the
  digit n is heard as the n-th word, marked ``keypad`` (a step without words takes any digits
  as its text). ``DigitsReceived`` from a speech port is mapped the same way.
* ``Lookup`` -> ``LookupRunner`` (ticket status, knowledge base, webhook; step timeout).
* ``RecordVoicemail`` -> the prompts, then ``RECORD FILE <dir>/<call>-<n> wav "#" <ms> BEEP
  s=<silence>``; ``endpos`` / 8000 is the duration. A caller who hangs up after speaking
  still leaves the message (``VoicemailRecorded``, then the hang-up shows on the next command).
* ``SetVariable`` -> ``SET VARIABLE``; ``SetLanguage`` -> ``EXEC Set CHANNEL(language)=xx``.
* ``RequestCallback`` -> ``SET VARIABLE CC_CALLBACK_NUMBER/CC_CALLBACK_LANGUAGE`` and the
  ``CallbackPort`` (an in-memory stand-in until the ACD exists).
* ``Queue`` -> with a ``QueuePort`` (the ACD) the caller waits on this AGI session
  (:class:`_QueueWait`): ``SET MUSIC ON <class>``, ``WAIT FOR DIGIT`` slices of
  ``RouteSettings.queue_poll_ms`` between which the port is asked for a reserved agent, every
  ``announce_every`` seconds music off, "You are number N in the queue. The expected wait is
  about M minutes." (a rendered text prompt, interruptible by the callback key), music on; the
  callback key confirms the caller's number (1 = yes) and keeps the place. An agent reserved ->
  music off, ``EXEC Dial <endpoint>,<ring timeout>`` then ``GET VARIABLE DIALSTATUS``: ANSWER ->
  answered and, the bridge over, finished (wrap-up); NOANSWER / BUSY / CHANUNAVAIL /
  CONGESTION -> not answered (back to the head of the queue), music on, wait again; CANCEL or
  a hang-up -> abandoned. EXEC Dial only returns when the bridged call ends, so the answer is
  reported when Dial is still running ``answer_grace_s`` after the ring timeout (it would have
  returned NOANSWER by then), or when it returns, whichever is first. Any hang-up while queued
  cancels the item (no agent left reserved). Without a port: the hand-off to the dialplan,
  ``SET VARIABLE`` ``CC_QUEUE``, ``CC_SKILLS`` (comma-separated), ``CC_PRIORITY``,
  ``CC_LANGUAGE``; the session ends (``queued``) and the dialplan queues the call.
* ``Transfer`` -> ``EXEC Dial <trunk pattern with {number}>,<ring timeout>``, then
  ``GET VARIABLE DIALSTATUS``: ``ANSWER`` is success, anything else a refusal.
* ``Hangup`` -> ``HANGUP``. ``RecordPath`` -> the path sink.

``511``, ``AgiChannelHungUp``, ``AgiConnectionLost`` (or a command timeout) at any point ->
``CallerHungUp``; the rest of the command list is dropped. Whatever happens, every event of
``IvrSession.path`` is published once, in order. Before a normal end (the session ended by
itself) the route sets ``CC_IVR_DONE=1``: the generated failover dialplan (``asterisk_conf``)
reads it to tell a finished flow from a controller that died mid-call.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from callcenter.logmask import mask_number
from callcenter.logs import bind
from ivr.adapters.fastagi_server import (
    AgiChannelHungUp,
    AgiCommandTimeout,
    AgiConnectionLost,
    AgiHandler,
    AgiSession,
)
from ivr.adapters.lookups import LookupRunner
from ivr.domain.call import CallId, CallInfo
from ivr.domain.commands import (
    Command,
    Hangup,
    ListenSpeech,
    Lookup,
    Play,
    Prompt,
    Queue,
    ReadDigits,
    RecordPath,
    RecordVoicemail,
    RequestCallback,
    SetLanguage,
    SetVariable,
    SoundPrompt,
    TextPrompt,
    Transfer,
)
from ivr.domain.events import (
    CallerHungUp,
    DigitsReceived,
    Event,
    NoInput,
    NoMatch,
    PromptFinished,
    SpeechRecognised,
    TransferResult,
    VoicemailFailed,
    VoicemailRecorded,
)
from ivr.domain.flow import Flow
from ivr.domain.path import QueueLeft, QueueOutcome
from ivr.domain.session import IvrSession, SessionState
from ivr.errors import IvrError
from ivr.ports import (
    AgentToDial,
    CallbackPort,
    Customer,
    CustomerDirectory,
    PathSink,
    PromptRendering,
    QueuedCall,
    QueueJoin,
    QueuePort,
    SpeechPort,
)
from ivr.protocol import agi_commands as agi
from ivr.protocol.agi import AgiProtocolError, AgiReply

__all__ = [
    "DONE_VARIABLE",
    "IvrRoute",
    "RouteSettings",
    "SpeechPort",
    "keypad_hint",
    "normalise_number",
]

_log = logging.getLogger(__name__)

DONE_VARIABLE = "CC_IVR_DONE"
ALL_DIGITS = "0123456789*#"
SAMPLE_RATE = 8000
_NUMBER = re.compile(r"\+?[0-9]{1,20}\Z")
_UNSAFE_FILE = re.compile(r"[^A-Za-z0-9._-]")
_AGI_GONE = (AgiChannelHungUp, AgiConnectionLost, AgiCommandTimeout, AgiProtocolError)

_HINTS = {
    "en": "Press {digit} for {word}.",
    "fr": "Tapez {digit} pour {word}.",
    "de": "Drücken Sie {digit} für {word}.",
}


@dataclass(frozen=True, slots=True)
class RouteSettings:
    """How flows meet this Asterisk: trunk, recordings, time limits."""

    # Dial string for a transfer to an external number; {number} is the number to call.
    trunk_pattern: str = "PJSIP/{number}@trunk"
    dial_timeout_s: int = 60  # ring time for a transfer
    transfer_max_s: float = 4 * 3600.0  # EXEC Dial returns when the transferred call ends
    media_timeout_s: float = 300.0  # reply timeout for STREAM FILE, GET DATA, WAIT FOR DIGIT
    recordings_dir: str = "/var/spool/asterisk/ivr-voicemail"
    record_format: str = "wav"
    record_silence_s: int | None = 5  # RECORD FILE stops after this much silence
    voicemail_min_s: float = 1.0  # shorter recordings count as nothing recorded
    customer_timeout_s: float = 1.0  # the customer directory's answer before the flow starts
    queue_poll_ms: int = 1000  # WAIT FOR DIGIT slice while queued (agent pick-up latency)
    answer_grace_s: float = 1.0  # Dial still running this long after the ring timeout = answered
    # Languages the speech port has a model for (empty: all); others fall back to the keypad.
    speech_languages: tuple[str, ...] = ()


def normalise_number(raw: str) -> str:
    """A caller id as ``+<digits>`` or ``<digits>`` ("" for unknown or non-numeric ids)."""
    text = raw.strip()
    if text.lower() in ("", "unknown", "anonymous", "<unknown>"):
        return ""
    digits = "".join(ch for ch in text if ch.isascii() and ch.isdigit())
    if not digits or any(ch.isalpha() for ch in text):
        return ""
    return f"+{digits}" if text.startswith("+") else digits


def keypad_hint(words: tuple[str, ...], language: str) -> str:
    """The keypad alternative to a speech step: "Press 1 for <word 1>. Press 2 for ..."."""
    template = _HINTS.get(language.split("_")[0].split("-")[0], _HINTS["en"])
    return " ".join(
        template.format(digit=i, word=word) for i, word in enumerate(words[:9], start=1)
    )


def _digits_as_speech(digits: str, words: tuple[str, ...]) -> Event:
    """Keypad input in a speech step: digit n is the n-th word; without words, the digits."""
    if not digits:
        return NoInput()
    if not words:
        return SpeechRecognised(digits, 1.0, keypad=True)
    if len(digits) == 1 and digits.isdigit() and 1 <= int(digits) <= min(len(words), 9):
        return SpeechRecognised(words[int(digits) - 1], 1.0, keypad=True)
    return NoMatch()


class IvrRoute:
    """Runs flows for FastAGI sessions; one instance serves every call of a node."""

    def __init__(
        self,
        *,
        renderer: PromptRendering,
        lookups: LookupRunner,
        path_sink: PathSink,
        callbacks: CallbackPort,
        customers: CustomerDirectory,
        speech: SpeechPort | None = None,
        queue: QueuePort | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        settings: RouteSettings | None = None,
    ) -> None:
        self.queue = queue
        self.renderer = renderer
        self.lookups = lookups
        self.path_sink = path_sink
        self.callbacks = callbacks
        self.customers = customers
        self.speech = speech
        self.clock = clock
        self.settings = settings or RouteSettings()

    def handler(self, flow: Callable[[], Flow | None]) -> AgiHandler:
        """A FastAGI handler running the flow ``flow()`` returns when the call arrives."""

        async def handle(session: AgiSession) -> None:
            current = flow()
            if current is None:
                _log.warning("no IVR flow for %s; the dialplan continues", session.env.script_path)
                return
            await self.run(session, current)

        return handle

    async def run(self, session: AgiSession, flow: Flow) -> None:
        """Walk ``flow`` for the call on ``session`` until the session ends or the caller leaves."""
        with bind(unique_id=session.unique_id):
            call = await self._call_info(session)
            with bind(call_id=call.call_id):
                _log.info(
                    "IVR flow %s started for caller %s on %s",
                    flow.name,
                    mask_number(call.caller),
                    session.env.channel,
                )
                ivr = IvrSession(flow, call, self.clock)
                await _CallRun(self, session, ivr).run()
                _log.info("IVR flow %s ended: %s", flow.name, ivr.outcome)

    async def _call_info(self, session: AgiSession) -> CallInfo:
        env = session.env
        call_id = env.unique_id
        try:
            reply = await session.send(agi.GetFullVariable("${CHANNEL(linkedid)}"))
            if reply.code == 200 and reply.data:
                call_id = reply.data
        except AgiChannelHungUp:
            pass  # GET FULL VARIABLE works on a dead channel; a 511 here changes nothing
        caller = normalise_number(env.caller_id)
        customer = await self._customer(caller)
        return CallInfo(
            call_id=CallId(call_id),
            caller=caller,
            called=env.extension,
            language=env.language,
            caller_known=customer.known,
            vip=customer.vip,
            variables=dict(session.params),
        )

    async def _customer(self, caller: str) -> Customer:
        if not caller:
            return Customer()
        try:
            async with asyncio.timeout(self.settings.customer_timeout_s):
                return await self.customers.customer(caller)
        except TimeoutError:
            _log.warning("customer directory gave no answer in time; caller treated as unknown")
        except Exception:
            _log.exception("customer directory failed; caller treated as unknown")
        return Customer()


class _CallRun:
    """One call's loop: run commands, feed the reply back, publish the path."""

    def __init__(self, route: IvrRoute, session: AgiSession, ivr: IvrSession) -> None:
        self.route = route
        self.settings = route.settings
        self.agi = session
        self.ivr = ivr
        self.published = 0
        self.voicemails = 0

    @property
    def call_id(self) -> CallId:
        return CallId(self.ivr.path[0].call_id) if self.ivr.path else CallId("")

    async def run(self) -> None:
        commands = self.ivr.start()
        try:
            while True:
                event = await self._execute(commands)
                if self.ivr.state is SessionState.ENDED:
                    break
                if event is None:
                    _log.error("IVR session waits for %s but got no reply", self.ivr.waiting_for)
                    return
                commands = self.ivr.handle(event)
            await self._mark_done()
        except _AGI_GONE as err:
            _log.info("caller left the IVR in step %s: %s", self.ivr.current_step, err)
        finally:
            if self.ivr.state is not SessionState.ENDED:
                self.ivr.handle(CallerHungUp())
            await self._publish_rest()

    async def _mark_done(self) -> None:
        try:
            await self.agi.send(agi.SetVariable(DONE_VARIABLE, "1"))
        except _AGI_GONE as err:
            _log.info("could not set %s: %s", DONE_VARIABLE, err)

    # --- the path ----------------------------------------------------------------------------

    async def _publish(self, command: RecordPath) -> None:
        await self.route.path_sink.publish(command.event)
        self.published += 1

    async def _publish_rest(self) -> None:
        """Publish the path events the dropped commands (or the hang-up) left unpublished."""
        for event in self.ivr.path[self.published :]:
            await self.route.path_sink.publish(event)
        self.published = len(self.ivr.path)

    # --- commands ----------------------------------------------------------------------------

    async def _execute(self, commands: list[Command]) -> Event | None:
        reply: Event | None = None
        for command in commands:
            match command:
                case RecordPath():
                    await self._publish(command)
                case Play():
                    reply = await self._play(command)
                case ReadDigits():
                    reply = await self._read_digits(command)
                case ListenSpeech():
                    reply = await self._listen(command)
                case Lookup():
                    reply = await self.route.lookups.run(command, self.ivr.language, self.call_id)
                case RecordVoicemail():
                    reply = await self._voicemail(command)
                case Queue():
                    reply = await self._queue(command)
                case Transfer():
                    reply = await self._transfer(command)
                case SetVariable():
                    await self.agi.send(agi.SetVariable(command.name, command.value))
                case SetLanguage():
                    await self.agi.send(agi.Exec("Set", f"CHANNEL(language)={command.language}"))
                case RequestCallback():
                    await self._callback(command)
                case Hangup():
                    await self.agi.send(agi.Hangup())
        return reply

    async def _media(self, command: agi.AgiCommand, extra_s: float = 0.0) -> AgiReply:
        return await self.agi.send(command, timeout=self.settings.media_timeout_s + extra_s)

    async def _ensure_alive(self, what: str) -> None:
        """After ``result=-1``: raise if the caller hung up, else it was a missing prompt."""
        if self.agi.hung_up:
            raise AgiChannelHungUp(f"{what}: channel hung up")
        status = await self.agi.send(agi.ChannelStatus())  # 511 raises when hung up
        if status.result is None or status.result < 0:
            raise AgiChannelHungUp(f"{what}: channel is gone (CHANNEL STATUS {status.result})")
        _log.warning("%s failed on a live channel: missing prompt?", what)

    async def _sound(self, prompt: Prompt) -> str | None:
        """The name to give STREAM FILE / GET DATA, or None if the prompt cannot be played."""
        if isinstance(prompt, SoundPrompt):
            return prompt.name
        assert isinstance(prompt, TextPrompt)
        try:
            path = await self.route.renderer.render(prompt.text, prompt.language)
        except IvrError as err:
            _log.error("text prompt skipped: %s", err)
            return None
        return str(path.with_suffix("")) if path.suffix else str(path)

    async def _stream(self, name: str, escape: str) -> str:
        """Play one prompt; the escape digit that stopped it, or ""."""
        reply = await self._media(agi.StreamFile(name, escape))
        if reply.result is not None and reply.result < 0:
            await self._ensure_alive(f"STREAM FILE {name}")
            return ""
        return reply.digits()

    async def _play(self, command: Play) -> PromptFinished:
        for prompt in command.prompts:
            name = await self._sound(prompt)
            if name is None:
                continue
            digit = await self._stream(name, command.interruptible_digits)
            if digit:
                return PromptFinished(interrupted_by=digit)
        return PromptFinished()

    async def _read_digits(self, command: ReadDigits) -> DigitsReceived:
        names = [name for p in command.prompts if (name := await self._sound(p)) is not None]
        terminator = command.terminator or "#"
        ask_with_get_data = terminator == "#"
        leading = names[:-1] if ask_with_get_data else names
        for name in leading:
            digit = await self._stream(name, ALL_DIGITS)
            if digit:
                return await self._wait_digits(digit, command, terminator)
        if not ask_with_get_data:
            return await self._wait_digits("", command, terminator)
        prompt = names[-1] if names else "silence/1"
        reply = await self._media(agi.GetData(prompt, command.timeout_ms, command.max_digits))
        if reply.raw_result.startswith("-"):
            await self._ensure_alive(f"GET DATA {prompt}")
            return await self._wait_digits("", command, terminator)
        return DigitsReceived(reply.digits(), timed_out=reply.timeout)

    async def _wait_digits(
        self, first: str, command: ReadDigits, terminator: str
    ) -> DigitsReceived:
        """Digits read with WAIT FOR DIGIT, starting with ``first`` (a digit already pressed)."""
        digits = ""
        pending = first
        while len(digits) < command.max_digits:
            digit = pending or await self._wait_digit(command.timeout_ms)
            pending = ""
            if not digit:
                return DigitsReceived(digits, timed_out=True)
            if digit == terminator:
                break
            digits += digit
        return DigitsReceived(digits)

    async def _wait_digit(self, timeout_ms: int) -> str:
        reply = await self._media(agi.WaitForDigit(timeout_ms))
        if reply.result is not None and reply.result < 0:
            await self._ensure_alive("WAIT FOR DIGIT")
            return ""
        return reply.digits()

    async def _listen(self, command: ListenSpeech) -> Event:
        language = self.ivr.language
        speech = self.route.speech
        languages = self.settings.speech_languages
        if speech is not None and (not languages or language in languages):
            event = await speech.listen(self.agi, command, language)
            if isinstance(event, DigitsReceived):
                return _digits_as_speech(event.digits, command.words)
            return event
        prompts: tuple[Prompt, ...] = command.prompts
        if command.words:
            prompts = (*prompts, TextPrompt(keypad_hint(command.words, language), language))
        max_digits = 1 if command.words else 20
        read = ReadDigits(prompts, max_digits, command.timeout_ms, "#")
        got = await self._read_digits(read)
        return _digits_as_speech(got.digits, command.words)

    async def _voicemail(self, command: RecordVoicemail) -> VoicemailRecorded | VoicemailFailed:
        for prompt in command.prompts:
            name = await self._sound(prompt)
            if name is not None:
                await self._stream(name, "")
        self.voicemails += 1
        safe_id = _UNSAFE_FILE.sub("_", self.call_id) or "call"
        base = f"{self.settings.recordings_dir.rstrip('/')}/{safe_id}-{self.voicemails}"
        record = agi.RecordFile(
            base,
            self.settings.record_format,
            "#",
            command.max_seconds * 1000,
            beep=True,
            silence_s=self.settings.record_silence_s,
        )
        reply = await self._media(record, extra_s=command.max_seconds)
        duration = max(0, reply.endpos or 0) / SAMPLE_RATE
        recording = f"{base}.{self.settings.record_format}"
        if reply.result is not None and reply.result < 0:
            caller_left = reply.data == "hangup" or self.agi.hung_up
            if caller_left and duration >= self.settings.voicemail_min_s:
                # The message counts; the hang-up shows on the next command.
                return VoicemailRecorded(recording, round(duration, 3))
            if caller_left:
                raise AgiChannelHungUp("caller hung up while recording")
            await self._ensure_alive("RECORD FILE")
            return VoicemailFailed(reply.data or "record-failed")
        if duration < self.settings.voicemail_min_s:
            return VoicemailFailed("too-short")
        return VoicemailRecorded(recording, round(duration, 3))

    async def _callback(self, command: RequestCallback) -> None:
        # The flow's callback step: a number for later, outside any queue (InMemoryCallbacks
        # until the help desk takes them); a callback *while queued* keeps the place, _QueueWait.
        await self.agi.send(agi.SetVariable("CC_CALLBACK_NUMBER", command.number))
        await self.agi.send(agi.SetVariable("CC_CALLBACK_LANGUAGE", command.language))
        try:
            await self.route.callbacks.request_callback(
                self.call_id, command.number, command.language
            )
        except Exception:
            _log.exception("callback request for %s failed", mask_number(command.number))

    async def _queue(self, command: Queue) -> TransferResult:
        """The caller waits in the ACD (``QueuePort``); without one, the dialplan hand-off."""
        port = self.route.queue
        if port is None:
            for name, value in (
                ("CC_QUEUE", command.queue),
                ("CC_SKILLS", ",".join(command.skills)),
                ("CC_PRIORITY", str(command.priority)),
                ("CC_LANGUAGE", command.language),
            ):
                await self.agi.send(agi.SetVariable(name, value))
            return TransferResult(ok=True)
        join = QueueJoin(
            self.call_id,
            command.queue,
            command.skills,
            command.priority,
            command.language,
            normalise_number(self.agi.env.caller_id),
            self.agi.unique_id,
        )
        try:
            queued = await port.join(join)
        except IvrError as err:
            _log.warning("queue %s refused the call: %s", command.queue, err)
            await self._queue_left(command.queue, QueueOutcome.REFUSED, 0)
            return TransferResult(ok=False, reason="no-queue")
        wait = _QueueWait(self, queued, command)
        try:
            result = await wait.run()
        except BaseException as err:
            await queued.abandon()  # the caller left (or we stopped): no agent left reserved
            if isinstance(err, IvrError):  # the caller hung up or the AGI connection broke
                await self._queue_left(
                    command.queue, QueueOutcome.ABANDONED, wait.waited_ms(), missed=wait.missed
                )
            raise
        outcome = QueueOutcome.ANSWERED if wait.agent else QueueOutcome.CALLBACK
        await self._queue_left(
            command.queue,
            outcome,
            wait.waited_ms(),
            agent=wait.agent,
            talk_ms=wait.talk_ms,
            missed=wait.missed,
        )
        return result

    async def _queue_left(
        self,
        queue: str,
        outcome: QueueOutcome,
        waited_ms: int,
        *,
        agent: str = "",
        talk_ms: int | None = None,
        missed: int = 0,
    ) -> None:
        event = QueueLeft(
            self.call_id, self.route.clock(), queue, outcome, waited_ms, agent, talk_ms, missed
        )
        await self.route.path_sink.publish(event)

    async def _transfer(self, command: Transfer) -> TransferResult:
        if not _NUMBER.match(command.number):
            _log.warning("transfer refused: %r is not a phone number", command.number)
            return TransferResult(ok=False, reason="invalid-number")
        target = self.settings.trunk_pattern.format(number=command.number)
        dial = agi.Exec("Dial", f"{target},{self.settings.dial_timeout_s}")
        await self.agi.send(dial, timeout=self.settings.transfer_max_s)
        status_reply = await self.agi.send(agi.GetVariable("DIALSTATUS"))
        status = (status_reply.data or "").upper()
        if status == "ANSWER":
            return TransferResult(ok=True)
        if self.agi.hung_up or status == "CANCEL":
            raise AgiChannelHungUp(f"caller hung up during the transfer (DIALSTATUS {status})")
        return TransferResult(ok=False, reason=status.lower() or "failed")


_ANNOUNCE = {
    "en": (
        "You are number {position} in the queue.",
        "The expected wait is about {minutes} minutes.",
        "The expected wait is about one minute.",
        "All our agents are busy.",
        "Press {key} to be called back and keep your place.",
    ),
    "fr": (
        "Vous êtes numéro {position} dans la file d'attente.",
        "L'attente estimée est d'environ {minutes} minutes.",
        "L'attente estimée est d'environ une minute.",
        "Tous nos conseillers sont occupés.",
        "Tapez {key} pour être rappelé sans perdre votre place.",
    ),
    "ko": (
        "고객님의 대기 순서는 {position}번입니다.",
        "예상 대기 시간은 약 {minutes}분입니다.",
        "예상 대기 시간은 약 1분입니다.",
        "지금은 모든 상담원이 통화 중입니다.",
        "순서를 유지한 채 전화를 다시 받으시려면 {key}번을 눌러 주세요.",
    ),
}
_CONFIRM = {
    "en": "We will call you back at the number ending in {tail}. Press 1 to confirm.",
    "fr": "Nous vous rappellerons au numéro finissant par {tail}. Tapez 1 pour confirmer.",
    "ko": "끝자리가 {tail}인 번호로 다시 전화드리겠습니다. 확인하시려면 1번을 눌러 주세요.",
}
_CALLBACK_DONE = {
    "en": "Thank you. We will call you back. Goodbye.",
    "fr": "Merci. Nous vous rappellerons. Au revoir.",
    "ko": "감사합니다. 다시 전화드리겠습니다. 안녕히 계세요.",
}


def queue_announcement(
    position: int, expected_wait_s: float | None, language: str, callback_key: str
) -> str:
    """What the waiting caller hears: position, expected wait (whole minutes, rounded up)."""
    texts = _ANNOUNCE.get(language.split("_")[0].split("-")[0], _ANNOUNCE["en"])
    parts = [texts[0].format(position=position)]
    if expected_wait_s is None:
        parts.append(texts[3])
    else:
        minutes = max(1, -(-int(expected_wait_s) // 60))
        parts.append(texts[2] if minutes == 1 else texts[1].format(minutes=minutes))
    if callback_key:
        parts.append(texts[4].format(key=callback_key))
    return " ".join(parts)


def _lang(table: dict[str, str], language: str) -> str:
    return table.get(language.split("_")[0].split("-")[0], table["en"])


class _QueueWait:
    """One caller's wait on the AGI session; see the module docstring (``Queue``)."""

    def __init__(self, run: _CallRun, queued: QueuedCall, command: Queue) -> None:
        self.run_ = run
        self.agi = run.agi
        self.queued = queued
        self.command = command
        self.settings = queued.settings
        self.language = command.language or run.ivr.language
        self.loop = asyncio.get_running_loop()
        self.joined = self.loop.time()
        self.agent = ""  # the agent who answered
        self.talk_ms: int | None = None
        self.answered_at: float | None = None
        self.missed = 0

    def waited_ms(self) -> int:
        """From joining the queue to the agent's answer (or to now)."""
        end = self.answered_at if self.answered_at is not None else self.loop.time()
        return max(0, round((end - self.joined) * 1000))

    async def run(self) -> TransferResult:
        key = self.settings.callback_key
        await self._music(on=True)
        next_announce = self.loop.time()
        while True:
            agent = await self.queued.next_agent(0)
            if agent is not None:
                await self._music(on=False)
                if await self._dial(agent):
                    return TransferResult(ok=True)
                await self._music(on=True)
                continue
            if self.loop.time() >= next_announce:
                next_announce = self.loop.time() + self.settings.announce_every_s
                if await self._announce() and await self._callback(key):
                    return TransferResult(ok=True)
                continue
            reply = await self.run_._media(agi.WaitForDigit(self.run_.settings.queue_poll_ms))
            if reply.result is not None and reply.result < 0:
                await self.run_._ensure_alive("WAIT FOR DIGIT")
            elif key and reply.digits() == key and await self._callback(key):
                return TransferResult(ok=True)

    async def _music(self, *, on: bool) -> None:
        await self.agi.send(agi.SetMusic(on, self.settings.moh_class if on else None))

    async def _announce(self) -> bool:
        """Position and expected wait; True if the caller pressed the callback key."""
        where = self.queued.position()
        if where is None:
            return False
        text = queue_announcement(
            where.position, where.expected_wait_s, self.language, self.settings.callback_key
        )
        name = await self.run_._sound(TextPrompt(text, self.language))
        if name is None:
            return False
        await self._music(on=False)
        digit = await self.run_._stream(name, self.settings.callback_key)
        await self._music(on=True)
        return bool(digit)

    async def _callback(self, key: str) -> bool:
        """Confirm the caller's number; True once the callback keeps the place."""
        number = normalise_number(self.agi.env.caller_id)
        if not number:
            return False
        await self._music(on=False)
        prompt = _lang(_CONFIRM, self.language).format(tail=number[-4:])
        name = await self.run_._sound(TextPrompt(prompt, self.language))
        got = ""
        if name is not None:
            reply = await self.run_._media(agi.GetData(name, 5000, 1))
            got = reply.digits() if not reply.raw_result.startswith("-") else ""
        if got != "1":
            await self._music(on=True)
            return False
        await self.queued.leave_callback(number, key)
        done = await self.run_._sound(
            TextPrompt(_lang(_CALLBACK_DONE, self.language), self.language)
        )
        if done is not None:
            await self.run_._stream(done, "")
        await self.agi.send(agi.Hangup())
        return True

    async def _dial(self, agent: AgentToDial) -> bool:
        """Ring the agent; True when the call was answered (and is over now)."""
        ring = max(1, round(agent.ring_timeout_s))
        dial = agi.Exec("Dial", f"{agent.endpoint},{ring}")
        sending = asyncio.ensure_future(
            self.agi.send(dial, timeout=self.run_.settings.transfer_max_s)
        )
        answered = False
        try:
            done, _ = await asyncio.wait(
                {sending}, timeout=ring + self.run_.settings.answer_grace_s
            )
            if not done:
                answered = True  # Dial would have returned NOANSWER by now
                await self.queued.answered()
            await sending
        finally:
            if not sending.done():
                sending.cancel()
        status_reply = await self.agi.send(agi.GetVariable("DIALSTATUS"))
        status = (status_reply.data or "").upper()
        if status == "ANSWER":
            if not answered:
                await self.queued.answered()
            talk = await self.agi.send(agi.GetVariable("ANSWEREDTIME_MS"))
            self.agent = agent.agent_id
            self.talk_ms = int(talk.data) if talk.data and talk.data.isdigit() else None
            ended = self.loop.time()
            self.answered_at = ended - (self.talk_ms or 0) / 1000
            await self.queued.finished()
            return True
        if status == "CANCEL" or self.agi.hung_up:
            raise AgiChannelHungUp(f"caller hung up while agent {agent.agent_id} rang")
        _log.info("agent %s did not answer (%s); back to the head", agent.agent_id, status)
        self.missed += 1
        await self.queued.not_answered(busy=status == "BUSY")
        return False
