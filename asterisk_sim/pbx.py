"""The simulated PBX core: variables, channel state, hangups, media waits and the dialplan runner.

Event order follows the traces (``tests/fixtures/asterisk-traces``, README section 4.4):

* ``Hangup()`` / AMI ``Hangup`` with a cause emit ``SoftHangupRequest``; AGI ``HANGUP`` emits it
  with ``Cause: 32``; AMI ``Hangup`` without a cause emits nothing on the channel itself.
* When one half of a Local pair goes away with cause C, the other half gets a (hard)
  ``HangupRequest`` with C before the ``Hangup`` of the first half.
* When a dialplan ends on a hung-up channel that had no ``SoftHangupRequest`` 16 yet, one is
  emitted, then ``Hangup`` with the channel's cause (0 "Unknown" if it was hung up from outside
  without a cause, 16 when the dialplan simply ended).
* A digit that arrives while nothing reads the channel is lost (res_agi discards frames
  between commands).

Gosub frames follow app_stack.c: ``Gosub`` pushes the return address (the next priority) and
sets ``ARG1``..``ARGn`` as LOCAL variables (blanking ARGs the caller's frame had beyond n);
``Set(LOCAL(x)=v)`` saves x's previous value in the top frame; ``Return(v)`` sets
``GOSUB_RETVAL``, restores every saved variable (with VarSet, as pbx_builtin_setvar_helper
does) and jumps back.

Endpoints: the simulator has no SIP stack, so a ``PJSIP/<res>`` or ``PJSIP/<user>@<endpoint>``
interface is played by a dialplan extension: ``PbxConfig.endpoints`` maps an endpoint name to
the context whose ``<res>`` (or ``<user>``) extension plays the phone (an ``AgentScript``, a
trunk answering a callback), dialled as a Local channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from asterisk_sim import event_templates as ev
from asterisk_sim.bus import EventBus
from asterisk_sim.channels import Channel, ChannelRegistry, ChannelState
from asterisk_sim.clock import SimClock
from asterisk_sim.dialplan import Dialplan, substitute
from asterisk_sim.functions import evaluate
from asterisk_sim.prompts import RATE, PromptLibrary

if TYPE_CHECKING:
    from asterisk_sim.queue_app import QueueConfig

_log = logging.getLogger(__name__)

AppFn = Callable[["Pbx", Channel, str], Awaitable[int]]

FRAME = 160  # samples per 20 ms frame
GOTO = 1  # an application result meaning "location already changed, do not advance"


@dataclass(frozen=True, slots=True)
class StreamResult:
    """Outcome of playing one prompt: the escape digit pressed (or ""), samples played, ok."""

    digit: str
    endpos: int
    ok: bool
    hungup: bool = False


@dataclass
class PbxConfig:
    """Tunables: AGI and AudioSocket address overrides, queues, simulated endpoints.

    `queues` is what queues.conf would define (``queue_app.parse_queues_conf``); `endpoints`
    maps a PJSIP endpoint name to the context that plays it (see the module docstring).
    """

    agi_overrides: dict[str, tuple[str, int]] = field(default_factory=dict)
    audiosocket_override: tuple[str, int] | None = None
    agi_connect_timeout: float = 5.0
    spool_dir: Path = Path("/var/spool/asterisk")
    write_recordings: bool = False
    queues: dict[str, QueueConfig] = field(default_factory=dict)
    endpoints: dict[str, str] = field(default_factory=dict)


@dataclass
class GosubFrame:
    """One Gosub level: where Return goes and the variables to restore (None: was unset)."""

    return_to: tuple[str, str, int]
    arg_count: int
    saved: dict[str, str | None] = field(default_factory=dict)


class Pbx:
    """Owns the channels and runs dialplans on them."""

    def __init__(
        self,
        dialplan: Dialplan,
        *,
        clock: SimClock,
        bus: EventBus,
        prompts: PromptLibrary | None = None,
        config: PbxConfig | None = None,
    ) -> None:
        self.dialplan = dialplan
        self.clock = clock
        self.bus = bus
        self.prompts = prompts or PromptLibrary()
        self.config = config or PbxConfig()
        self.channels = ChannelRegistry(clock)
        self.globals: dict[str, str] = dict(dialplan.globals)
        self.apps: dict[str, AppFn] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.started_at = clock.now()
        self.gosub_stacks: dict[Channel, list[GosubFrame]] = {}
        self.queue_callers: dict[str, list[Channel]] = {}  # waiting callers per queue
        self.busy_members: set[str] = set()  # queue member interfaces on a call

    # -- tasks -------------------------------------------------------------------------------

    def spawn(self, coro: Awaitable[None], name: str) -> asyncio.Task[None]:
        """Run a background coroutine owned by the PBX (cancelled by close())."""

        async def runner() -> None:
            await coro

        task = asyncio.ensure_future(runner())
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("simulator task %s failed", task.get_name(), exc_info=task.exception())

    async def close(self) -> None:
        """Cancel every running call."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- events and variables ----------------------------------------------------------------

    def emit(self, headers: ev.Headers) -> None:
        self.bus.emit(headers)

    def set_var(self, ch: Channel | None, name: str, value: str) -> None:
        """Set a channel (or, with ch=None, a global) variable and emit VarSet."""
        if ch is None:
            self.globals[name] = value
        else:
            ch.variables[name] = value
        self.emit(ev.varset(ch, name, value))

    def get_var(self, ch: Channel | None, name: str) -> str | None:
        """A variable's value: builtins, then the channel's, then globals."""
        if ch is not None:
            builtin = self._builtin(ch, name)
            if builtin is not None:
                return builtin
            if name in ch.variables:
                return ch.variables[name]
        return self.globals.get(name)

    def _builtin(self, ch: Channel, name: str) -> str | None:
        if name == "CHANNEL":
            return ch.name
        if name == "UNIQUEID":
            return ch.uniqueid
        if name == "EXTEN":
            return ch.exten
        if name == "CONTEXT":
            return ch.context
        if name == "PRIORITY":
            return str(ch.priority)
        if name == "HANGUPCAUSE":
            return str(ch.hangup_cause or 0)
        if name == "CALLERID(num)":
            return ch.caller_num
        return None

    def function(self, ch: Channel | None, name: str, args: str) -> str | None:
        """Dialplan functions: CALLERID, CONNECTEDLINE, CHANNEL(name)."""
        arg = args.strip().lower()
        if ch is None:
            return None
        if name == "CALLERID":
            num = "" if ch.caller_num == "<unknown>" else ch.caller_num
            cname = "" if ch.caller_name == "<unknown>" else ch.caller_name
            if arg in ("num", "number"):
                return num
            if arg == "name":
                return cname
            if arg == "all":
                return f'"{cname}" <{num}>' if cname else num
            return None
        if name == "CONNECTEDLINE":
            if arg in ("num", "number"):
                return "" if ch.connected_num == "<unknown>" else ch.connected_num
            if arg == "name":
                return "" if ch.connected_name == "<unknown>" else ch.connected_name
            return None
        if name == "CHANNEL":
            return {"name": ch.name, "uniqueid": ch.uniqueid, "linkedid": ch.linkedid}.get(arg)
        return None

    def write_function(self, ch: Channel, name: str, args: str, value: str) -> bool:
        """``Set(FUNC(args)=value)`` for CALLERID(num|name); False if not modelled."""
        arg = args.strip().lower()
        if name == "CALLERID" and arg in ("num", "number", "name"):
            if arg == "name":
                ch.caller_name = value
            else:
                ch.caller_num = value
            self.emit(ev.newcallerid(ch))
            return True
        return False

    # -- Gosub frames and LOCAL variables ----------------------------------------------------

    def set_local(self, ch: Channel, name: str, value: str) -> bool:
        """``Set(LOCAL(name)=value)``: False (nothing set) outside a Gosub, as app_stack does."""
        stack = self.gosub_stacks.get(ch)
        if not stack:
            _log.warning("LOCAL(%s) set outside a Gosub on %s: ignored", name, ch.name)
            return False
        saved = stack[-1].saved
        if name not in saved:
            saved[name] = ch.variables.get(name)
        self.set_var(ch, name, value)
        return True

    def gosub(self, ch: Channel, target: tuple[str, str, int], args: list[str]) -> None:
        """Push a frame returning to the next priority, set ARGn, move `ch` to `target`."""
        stack = self.gosub_stacks.setdefault(ch, [])
        previous = stack[-1].arg_count if stack else 0
        stack.append(GosubFrame((ch.context, ch.exten, ch.priority + 1), len(args)))
        for index in range(1, max(len(args), previous) + 1):
            self.set_local(ch, f"ARG{index}", args[index - 1] if index <= len(args) else "")
        ch.context, ch.exten, ch.priority = target

    def gosub_return(self, ch: Channel, value: str) -> bool:
        """``Return(value)``: restore the frame's variables and jump back; False if no frame."""
        stack = self.gosub_stacks.get(ch)
        if not stack:
            return False
        frame = stack.pop()
        for name, old in frame.saved.items():
            self.set_var(ch, name, old or "")
            if old is None:
                ch.variables.pop(name, None)
        self.set_var(ch, "GOSUB_RETVAL", value)
        ch.context, ch.exten, ch.priority = frame.return_to
        return True

    def location(self, ch: Channel, target: str) -> tuple[str, str, int] | None:
        """``[[context,]exten,]priority|label`` relative to `ch`; None if it does not exist."""
        parts = [p.strip() for p in target.split(",")]
        context, exten = ch.context, ch.exten
        if len(parts) == 3:
            context, exten, prio = parts
        elif len(parts) == 2:
            exten, prio = parts
        else:
            prio = parts[0]
        if prio.isdigit():
            number: int | None = int(prio)
        else:
            number = self.dialplan.label(context, exten, prio)
        if number is None or not self.dialplan.has_extension(context, exten, number):
            return None
        return context, exten, number

    # -- simulated endpoints -----------------------------------------------------------------

    def local_for(self, interface: str) -> tuple[str, str] | None:
        """(exten, context) of the Local channel that plays `interface`, None if unknown.

        ``Local/x@ctx[/n]`` is itself; ``PJSIP/<res>`` and ``PJSIP/<user>@<endpoint>`` use
        ``config.endpoints``; ``PJSIP/<res>`` also accepts an endpoint literally named <res>.
        """
        tech, _, rest = interface.strip().partition("/")
        tech = tech.lower()
        if tech == "local" and "@" in rest:
            exten, _, context = rest.partition("@")
            return exten, context.split("/", 1)[0]
        if tech == "pjsip" and rest:
            user, at, endpoint = rest.partition("@")
            endpoint = endpoint if at else user
            played_by = self.config.endpoints.get(endpoint)
            if played_by is not None:
                return user, played_by
        return None

    def _any_function(self, ch: Channel | None, name: str, args: str) -> str | None:
        value = evaluate(name, args, lambda n: self.get_var(ch, n))
        return value if value is not None else self.function(ch, name, args)

    def substitute(self, ch: Channel | None, text: str) -> str:
        """Expand ``${...}`` in `text` against `ch`."""
        return substitute(text, lambda n: self.get_var(ch, n), lambda n, a: self.function(ch, n, a))

    def read_variable(self, ch: Channel | None, expression: str) -> str | None:
        """A Getvar / GET VARIABLE lookup: a plain name or a function call like CALLERID(num)."""
        if expression.endswith(")") and "(" in expression:
            name, _, args = expression[:-1].partition("(")
            return self._any_function(ch, name.strip().upper(), args)
        return self.get_var(ch, expression)

    # -- state -------------------------------------------------------------------------------

    def set_state(self, ch: Channel, state: ChannelState) -> None:
        if ch.state != state and not ch.gone:
            ch.state = state
            self.emit(ev.newstate(ch))

    def answer(self, ch: Channel) -> None:
        """Answer `ch`; a Local ``;2`` also answers its ``;1`` (which the originator waits on)."""
        if ch.state == ChannelState.UP or ch.gone:
            return
        self.set_state(ch, ChannelState.UP)
        peer = ch.peer
        if peer is not None and ch.name.endswith(";2") and not peer.gone:
            self.set_state(peer, ChannelState.UP)
            peer.control.put_nowait("ANSWER")

    def ringing(self, ch: Channel) -> None:
        """``Ringing()`` on a ``;2``: its ``;1`` goes to Ringing."""
        peer = ch.peer
        if peer is not None and not peer.gone:
            self.set_state(peer, ChannelState.RINGING)
            peer.control.put_nowait("RINGING")

    def busy(self, ch: Channel) -> None:
        """``Busy()`` on a ``;2``: state Busy, cause 17, and BUSY towards the dialler."""
        self.set_state(ch, ChannelState.BUSY)
        if ch.hangup_cause is None:
            ch.hangup_cause = 17
        peer = ch.peer
        if peer is not None and not peer.gone:
            peer.control.put_nowait("BUSY")

    # -- hangups -----------------------------------------------------------------------------

    def soft_hangup(self, ch: Channel, *, event_cause: int | None, cause: int | None) -> None:
        """Ask `ch` to hang up; its current application returns at the next check."""
        if ch.gone:
            return
        if cause is not None and ch.hangup_cause is None:
            ch.hangup_cause = cause
        if event_cause is not None:
            self.emit(ev.hangup_request(ch, event_cause, soft=True))
            if event_cause == 16:
                ch.soft16_emitted = True
        ch.soft_hangup = True
        ch.hangup_event.set()
        ch.control.put_nowait("HANGUP")

    def hangup_peer(self, ch: Channel, cause: int) -> None:
        """Tell the other half of a Local pair that `ch` is going away (``HangupRequest``)."""
        peer = ch.peer
        if ch.peer_notified or peer is None or peer.gone:
            return
        ch.peer_notified = True
        if ch.name.endswith(";2") and "DIALSTATUS" in ch.variables:
            self.set_var(peer, "CHANLOCALSTATUS", ch.variables["DIALSTATUS"])
        self.emit(ev.hangup_request(peer, cause, soft=False))
        if peer.hangup_cause is None:
            peer.hangup_cause = cause
        peer.soft_hangup = True
        peer.hangup_event.set()
        peer.control.put_nowait("HANGUP")

    def destroy(self, ch: Channel, cause: int | None = None) -> None:
        """The channel goes away: the peer Local half is told first, then ``Hangup``."""
        if ch.gone:
            return
        if cause is None:
            cause = ch.hangup_cause if ch.hangup_cause is not None else 0
        ch.hangup_cause = cause
        self.hangup_peer(ch, cause)
        ch.gone = True
        ch.soft_hangup = True
        ch.hangup_event.set()
        self.emit(ev.hangup(ch, cause))
        self.channels.remove(ch)
        self.gosub_stacks.pop(ch, None)

    # -- waiting and media -------------------------------------------------------------------

    async def next_digit(self, ch: Channel, timeout: float | None) -> str | None:
        """A received digit; "" on timeout; None on hangup or redirect. Caller sets reading."""
        if ch.is_hungup or ch.redirect_to is not None:
            return None
        if not ch.dtmf.empty():
            return ch.dtmf.get_nowait()
        if timeout is not None and timeout <= 0:
            return ""
        getter = asyncio.ensure_future(ch.dtmf.get())
        hang = asyncio.ensure_future(ch.hangup_event.wait())
        redirect = asyncio.ensure_future(ch.redirect_event.wait())
        waiters = {getter, hang, redirect}
        try:
            await asyncio.wait(
                waiters,
                timeout=None if timeout is None else self.clock.real(timeout),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for waiter in waiters:
                if not waiter.done():
                    waiter.cancel()
        if getter.done() and not getter.cancelled():
            return getter.result()
        if hang.done() or redirect.done():
            return None
        return ""

    async def wait(self, ch: Channel, seconds: float, *, read_dtmf: bool = False) -> bool:
        """Wait `seconds` (digits are discarded); False if hung up or redirected meanwhile."""
        loop_deadline = self.clock.now() + seconds
        while True:
            left = loop_deadline - self.clock.now()
            if left <= 0:
                return not ch.is_hungup
            ch.reading += 1
            try:
                got = await self.next_digit(ch, left)
            finally:
                ch.reading -= 1
            if got is None:
                return False
            if got == "":
                return True

    async def stream(self, ch: Channel, name: str, escape: str = "") -> StreamResult:
        """Play prompt `name`; stop on a digit in `escape` (ast_streamfile + ast_waitstream)."""
        samples = self.prompts.samples(name)
        if samples is None:
            return StreamResult("", 0, ok=False)
        length = samples / RATE
        start = self.clock.now()
        ch.reading += 1
        try:
            while True:
                left = length - (self.clock.now() - start)
                if left <= 0:
                    return StreamResult("", samples, ok=True)
                got = await self.next_digit(ch, left)
                if got is None:
                    played = int((self.clock.now() - start) * RATE)
                    return StreamResult("", min(played, samples), ok=True, hungup=True)
                if got and got in escape:
                    # res_agi reports the position in whole 20 ms frames already read.
                    played = -(-int((self.clock.now() - start) * RATE) // FRAME) * FRAME
                    return StreamResult(got, min(played, samples), ok=True)
                if got == "":
                    return StreamResult("", samples, ok=True)
        finally:
            ch.reading -= 1

    def start_moh(self, ch: Channel, moh_class: str) -> None:
        if ch.moh_class is None:
            ch.moh_class = moh_class or "default"
            self.emit(ev.channel_event("MusicOnHoldStart", ch, ("Class", ch.moh_class)))

    def stop_moh(self, ch: Channel) -> None:
        if ch.moh_class is not None:
            ch.moh_class = None
            self.emit(ev.channel_event("MusicOnHoldStop", ch))

    # -- DTMF injection ----------------------------------------------------------------------

    async def play_dtmf(self, ch: Channel, digit: str, duration_ms: int, *, receive: bool) -> None:
        """AMI PlayDTMF: Receive=true queues on `ch` itself; otherwise it is sent to the far end."""
        if receive:
            self.emit(ev.dtmf_end(ch, digit, duration_ms))
            ch.deliver_dtmf(digit)
            return
        target = ch.peer if ch.peer is not None else ch.bridged_with
        if target is None or target.gone:
            await asyncio.sleep(self.clock.real(duration_ms / 1000))
            return
        await asyncio.sleep(self.clock.real(duration_ms / 1000))
        self.emit(ev.dtmf_begin(target, digit))
        self.emit(ev.dtmf_end(target, digit, duration_ms))
        target.deliver_dtmf(digit)

    # -- the dialplan runner -----------------------------------------------------------------

    def start_pbx(self, ch: Channel) -> asyncio.Task[None]:
        """Run the dialplan on `ch` from its current context/exten/priority, in the background."""
        return self.spawn(self.run_pbx(ch), f"pbx {ch.name}")

    async def run_pbx(self, ch: Channel) -> None:
        """pbx.c's __ast_pbx_run: one Newexten per priority, until hangup or the end."""
        try:
            while not ch.is_hungup:
                if ch.redirect_to is not None:
                    ch.context, ch.exten, ch.priority = ch.redirect_to
                    ch.redirect_to = None
                    ch.redirect_event.clear()
                step = self.dialplan.find(ch.context, ch.exten, ch.priority)
                if step is None:
                    break
                data = self.substitute(ch, step.args)
                ch.application, ch.app_data = step.app, data
                self.emit(ev.newexten(ch, step.app, data))
                result = await self.exec_app(ch, step.app, data)
                if ch.redirect_to is not None:
                    continue
                if result == GOTO:
                    continue
                if result != 0:
                    break
                ch.priority += 1
        finally:
            if not ch.gone:
                self.end_pbx(ch)

    def end_pbx(self, ch: Channel) -> None:
        """The dialplan is over: request the hangup if needed, then destroy the channel."""
        if not ch.soft16_emitted:
            self.emit(ev.hangup_request(ch, 16, soft=True))
            ch.soft16_emitted = True
        if ch.hangup_cause is None:
            ch.hangup_cause = 0 if ch.soft_hangup else 16
        self.destroy(ch)

    async def exec_app(self, ch: Channel, app: str, data: str) -> int:
        """Run one dialplan application; -2 if it does not exist (as EXEC reports it)."""
        fn = self.apps.get(app.lower())
        if fn is None:
            _log.warning("no application %s (data %r) on %s", app, data, ch.name)
            return -2
        return await fn(self, ch, data)

    def goto(self, ch: Channel, target: str) -> bool:
        """Goto([[context,]exten,]priority|label): move `ch`; False if the target is unknown."""
        place = self.location(ch, target)
        if place is None:
            return False
        ch.context, ch.exten, ch.priority = place
        return True
