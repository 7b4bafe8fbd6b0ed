"""Dialplan applications of the simulator (app_*.c behaviour the traces show).

Each application is ``async (pbx, channel, data) -> int``: 0 continues with the next priority,
-1 hangs up, ``GOTO`` means the application moved the channel itself. Modelled: Answer, NoOp,
Verbose, Log, Wait, Playback, Background, Read, Set, Hangup, Goto, GotoIf, Busy, Congestion,
Ringing, Progress, Echo, SendDTMF, MusicOnHold, StartMusicOnHold, StopMusicOnHold, UserEvent,
MixMonitor, StopMixMonitor, AudioSocket, Gosub, Return, TryExec, Exec, Queue (queue_app.py;
a queue unknown to ``PbxConfig.queues`` keeps the old stub: hold music, then
QUEUESTATUS=TIMEOUT). Dial and AGI live in dial.py and agi_client.py; :func:`use_endpoints`
lets Dial reach ``PJSIP/...`` interfaces played by dialplan extensions. Not modelled (the
application is missing, so the dialplan stops there): ChanSpy, VoiceMail.
"""

from __future__ import annotations

import logging
import uuid

from asterisk_sim import event_templates as ev
from asterisk_sim.channels import Channel, ChannelState
from asterisk_sim.dialplan import split_app_args
from asterisk_sim.pbx import GOTO, AppFn, Pbx

_log = logging.getLogger(__name__)

ANSWER_SETTLE = 0.005


def split_args(data: str) -> list[str]:
    """AST_STANDARD_APP_ARGS: split on commas outside quotes and parentheses."""
    args: list[str] = []
    depth = 0
    quoted = False
    current: list[str] = []
    for ch in data:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0 and not quoted:
            args.append("".join(current))
            current = []
            continue
        current.append(ch)
    args.append("".join(current))
    return args


def _float(text: str, default: float) -> float:
    try:
        return float(text)
    except ValueError:
        return default


async def app_noop(pbx: Pbx, ch: Channel, data: str) -> int:
    return 0


async def app_answer(pbx: Pbx, ch: Channel, data: str) -> int:
    if ch.is_hungup:
        return -1
    if ch.state != ChannelState.UP:
        pbx.answer(ch)
        # The answer reaches the other side before the next priority runs (about 5 ms).
        await pbx.clock.sleep(ANSWER_SETTLE)
    return 0


async def app_wait(pbx: Pbx, ch: Channel, data: str) -> int:
    ok = await pbx.wait(ch, _float(data.strip() or "0", 0.0))
    return 0 if ok or ch.redirect_to is not None else -1


async def app_echo(pbx: Pbx, ch: Channel, data: str) -> int:
    await pbx.wait(ch, 24 * 3600.0)
    return -1


async def app_playback(pbx: Pbx, ch: Channel, data: str) -> int:
    args = split_args(data)
    options = args[1] if len(args) > 1 else ""
    if "noanswer" not in options:
        pbx.answer(ch)
    status = "SUCCESS"
    for name in args[0].split("&"):
        result = await pbx.stream(ch, name.strip())
        if result.hungup:
            return -1
        if not result.ok:
            status = "FAILED"
    pbx.set_var(ch, "PLAYBACKSTATUS", status)
    return 0


async def app_background(pbx: Pbx, ch: Channel, data: str) -> int:
    args = split_args(data)
    pbx.answer(ch)
    for name in args[0].split("&"):
        result = await pbx.stream(ch, name.strip(), "0123456789*#")
        if result.hungup:
            return -1
        if result.digit:
            target = result.digit if pbx.dialplan.has_extension(ch.context, result.digit) else "i"
            if pbx.dialplan.has_extension(ch.context, target):
                ch.exten, ch.priority = target, 1
                return GOTO
            return 0
    return 0


async def app_read(pbx: Pbx, ch: Channel, data: str) -> int:
    """Read(var,filename,maxdigits,options,attempts,timeout): sets var and READSTATUS."""
    args = [*split_args(data), "", "", "", "", "", ""]
    var, prompt, max_text, timeout_text = args[0], args[1], args[2], args[5]
    max_digits = int(max_text) if max_text.isdigit() and int(max_text) > 0 else 255
    timeout = _float(timeout_text, 5.0) if timeout_text else 5.0
    digits = ""
    first = ""
    if prompt:
        result = await pbx.stream(ch, prompt, "0123456789*#")
        if result.hungup:
            pbx.set_var(ch, "READSTATUS", "HANGUP")
            return -1
        first = result.digit
    ch.reading += 1
    try:
        pending = first
        while len(digits) < max_digits:
            got = pending or await pbx.next_digit(ch, timeout)
            pending = ""
            if got is None:
                pbx.set_var(ch, var, digits)
                pbx.set_var(ch, "READSTATUS", "HANGUP")
                return -1
            if got in ("", "#"):
                break
            digits += got
    finally:
        ch.reading -= 1
    pbx.set_var(ch, var, digits)
    pbx.set_var(ch, "READSTATUS", "OK" if digits else "TIMEOUT")
    return 0


async def app_set(pbx: Pbx, ch: Channel, data: str) -> int:
    name, _, value = data.partition("=")
    name = name.strip()
    if name.startswith("__"):
        name = name[2:]
    elif name.startswith("_"):
        name = name[1:]
    upper = name.upper()
    if upper.startswith("GLOBAL(") and name.endswith(")"):
        pbx.set_var(None, name[7:-1], value)
    elif upper.startswith("LOCAL(") and name.endswith(")"):
        pbx.set_local(ch, name[6:-1].strip(), value)
    elif name.endswith(")") and "(" in name:
        func, _, args = name[:-1].partition("(")
        if not pbx.write_function(ch, func.strip().upper(), args, value):
            pbx.set_var(ch, name, value)
    else:
        pbx.set_var(ch, name, value)
    return 0


async def app_gosub(pbx: Pbx, ch: Channel, data: str) -> int:
    """Gosub([[context,]exten,]priority[(arg1[,...])]): -1 if the target does not exist."""
    text = data.strip()
    args: list[str] = []
    paren = text.find("(")
    if paren >= 0 and text.endswith(")"):
        args = split_args(text[paren + 1 : -1])
        text = text[:paren]
    target = pbx.location(ch, text)
    if target is None:
        _log.warning("Gosub(%s) on %s: no such place", data, ch.name)
        return -1
    pbx.gosub(ch, target, args)
    return GOTO


async def app_return(pbx: Pbx, ch: Channel, data: str) -> int:
    """Return([value]): back to the priority after the Gosub; -1 without a Gosub."""
    if not pbx.gosub_return(ch, data):
        _log.warning("Return(%s) without a Gosub on %s", data, ch.name)
        return -1
    return GOTO


async def app_tryexec(pbx: Pbx, ch: Channel, data: str) -> int:
    """TryExec(App(args)): TRYSTATUS SUCCESS / FAILED / NOAPP; the dialplan goes on."""
    app, args = split_app_args(data)
    if app.lower() not in pbx.apps:
        pbx.set_var(ch, "TRYSTATUS", "NOAPP")
        return 0
    result = await pbx.exec_app(ch, app, args)
    pbx.set_var(ch, "TRYSTATUS", "SUCCESS" if result == 0 else "FAILED")
    return -1 if ch.is_hungup else 0


async def app_exec(pbx: Pbx, ch: Channel, data: str) -> int:
    """Exec(App(args)): runs App and returns what it returns."""
    app, args = split_app_args(data)
    if app.lower() not in pbx.apps:
        return -1
    return await pbx.exec_app(ch, app, args)


async def app_hangup(pbx: Pbx, ch: Channel, data: str) -> int:
    cause = int(data) if data.strip().isdigit() else 16
    pbx.soft_hangup(ch, event_cause=16, cause=cause)
    return -1


async def app_goto(pbx: Pbx, ch: Channel, data: str) -> int:
    if not pbx.goto(ch, data):
        _log.warning("Goto(%s) on %s: no such place", data, ch.name)
        return -1
    return GOTO


async def app_gotoif(pbx: Pbx, ch: Channel, data: str) -> int:
    cond, _, branches = data.partition("?")
    yes, _, no = branches.partition(":")
    target = yes if cond.strip() not in ("", "0") else no
    if not target.strip():
        return 0
    return await app_goto(pbx, ch, target)


async def app_busy(pbx: Pbx, ch: Channel, data: str) -> int:
    pbx.busy(ch)
    await pbx.wait(ch, _float(data.strip() or "0", 0.0) or 24 * 3600.0)
    return -1


async def app_congestion(pbx: Pbx, ch: Channel, data: str) -> int:
    if ch.hangup_cause is None:
        ch.hangup_cause = 34
    await pbx.wait(ch, _float(data.strip() or "0", 0.0) or 24 * 3600.0)
    return -1


async def app_ringing(pbx: Pbx, ch: Channel, data: str) -> int:
    pbx.ringing(ch)
    return 0


async def app_senddtmf(pbx: Pbx, ch: Channel, data: str) -> int:
    args = split_args(data)
    duration = int(args[2]) if len(args) > 2 and args[2].isdigit() else 250
    for digit in args[0]:
        if ch.is_hungup:
            return -1
        await pbx.play_dtmf(ch, digit, duration, receive=False)
        await pbx.clock.sleep(0.1)
    return 0


async def app_musiconhold(pbx: Pbx, ch: Channel, data: str) -> int:
    args = split_args(data)
    pbx.start_moh(ch, args[0] or "default")
    duration = _float(args[1], 0.0) if len(args) > 1 and args[1] else 24 * 3600.0
    ok = await pbx.wait(ch, duration)
    pbx.stop_moh(ch)
    return 0 if ok else -1


async def app_start_moh(pbx: Pbx, ch: Channel, data: str) -> int:
    pbx.start_moh(ch, data.strip() or "default")
    return 0


async def app_stop_moh(pbx: Pbx, ch: Channel, data: str) -> int:
    pbx.stop_moh(ch)
    return 0


async def app_userevent(pbx: Pbx, ch: Channel, data: str) -> int:
    args = split_args(data)
    headers = ev.channel_event("UserEvent", ch, ("UserEvent", args[0]), privilege="user,all")
    for item in args[1:]:
        key, sep, value = item.partition(":")
        if sep:
            headers.append((key.strip(), value.strip()))
    pbx.emit(headers)
    return 0


async def app_mixmonitor(pbx: Pbx, ch: Channel, data: str) -> int:
    from asterisk_sim.recording import start_mixmonitor

    args = split_args(data)
    start_mixmonitor(pbx, ch, args[0], args[1] if len(args) > 1 else "")
    return 0


async def app_stopmixmonitor(pbx: Pbx, ch: Channel, data: str) -> int:
    from asterisk_sim.recording import stop_mixmonitor

    stop_mixmonitor(pbx, ch)
    return 0


async def app_queue(pbx: Pbx, ch: Channel, data: str) -> int:
    """Queue(name,options,URL,announce,timeout): queue_app.py for a configured queue."""
    from asterisk_sim.queue_app import app_queue as queue_with_members

    args = split_args(data)
    if args[0].strip() in pbx.config.queues:
        return await queue_with_members(pbx, ch, data)
    return await _queue_stub(pbx, ch, args)


async def _queue_stub(pbx: Pbx, ch: Channel, args: list[str]) -> int:
    """An unconfigured queue, as app_queue's ``queue_exec`` treats it: "Unable to join queue",
    ``QUEUESTATUS=UNKNOWN`` and the dialplan goes on (0), the caller neither answered nor held."""
    _log.warning("Unable to join queue '%s'", args[0].strip())
    pbx.set_var(ch, "QUEUESTATUS", "UNKNOWN")
    return 0


async def app_audiosocket(pbx: Pbx, ch: Channel, data: str) -> int:
    """AudioSocket(uuid,host:port): the simulator's client streams the caller's audio."""
    from asterisk_sim.media import run_audiosocket_for

    args = split_args(data)
    if len(args) < 2:
        return -1
    try:
        call_id = uuid.UUID(args[0].strip())
    except ValueError:
        return -1
    host, _, port_text = args[1].strip().rpartition(":")
    if not port_text.isdigit():
        return -1
    return await run_audiosocket_for(pbx, ch, host, int(port_text), call_id)


class EndpointDial:
    """Dial, with ``PJSIP/...`` targets known to ``config.endpoints`` dialled as their Local."""

    def __init__(self, dial: AppFn) -> None:
        self.dial = dial

    async def __call__(self, pbx: Pbx, ch: Channel, data: str) -> int:
        args = split_args(data)
        targets = []
        for target in args[0].split("&"):
            local = pbx.local_for(target) if target.strip().lower().startswith("pjsip/") else None
            targets.append(f"Local/{local[0]}@{local[1]}" if local else target)
        return await self.dial(pbx, ch, ",".join(["&".join(targets), *args[1:]]))


def use_endpoints(pbx: Pbx, endpoints: dict[str, str]) -> None:
    """Play PJSIP endpoint `name` by the extensions of context `endpoints[name]` (Dial, Queue)."""
    pbx.config.endpoints.update(endpoints)
    dial = pbx.apps.get("dial")
    if dial is not None and not isinstance(dial, EndpointDial):
        pbx.apps["dial"] = EndpointDial(dial)


BUILTIN_APPS: dict[str, AppFn] = {
    "noop": app_noop,
    "verbose": app_noop,
    "log": app_noop,
    "progress": app_noop,
    "answer": app_answer,
    "wait": app_wait,
    "echo": app_echo,
    "playback": app_playback,
    "background": app_background,
    "read": app_read,
    "set": app_set,
    "hangup": app_hangup,
    "goto": app_goto,
    "gotoif": app_gotoif,
    "busy": app_busy,
    "congestion": app_congestion,
    "ringing": app_ringing,
    "senddtmf": app_senddtmf,
    "musiconhold": app_musiconhold,
    "startmusiconhold": app_start_moh,
    "stopmusiconhold": app_stop_moh,
    "userevent": app_userevent,
    "mixmonitor": app_mixmonitor,
    "stopmixmonitor": app_stopmixmonitor,
    "queue": app_queue,
    "audiosocket": app_audiosocket,
    "gosub": app_gosub,
    "return": app_return,
    "tryexec": app_tryexec,
    "exec": app_exec,
}
