"""The Queue application for queues with static members (queues.conf), strategy ringall.

Theory of operation (app_queue.c as the ``queue-call`` / ``queue-abandon`` traces show it,
README section 4.5): the caller joins (``QueueCallerJoin Position/Count``) and hears the
queue's music class. Every member not already on a call is rung at once (``AgentCalled``,
``DialBegin``) for the queue's ``timeout`` seconds; a member that does not answer gets
``AgentRingNoAnswer`` and ``DialEnd NOANSWER``, and after ``retry`` seconds all are rung
again. The first to answer wins (``DialEnd ANSWER``; the others ``DialEnd CANCEL``), the
caller leaves the queue (``QueueCallerLeave``), ``AgentConnect`` follows and a basic bridge
joins the two (``BridgeCreate``, ``BridgeEnter`` x2). When either side hangs up:
``AgentComplete`` (``Reason: agent|caller``), ``BridgeLeave`` x2, ``BridgeDestroy``, and the
caller is hung up too: Queue does not return to the dialplan (-1). When the application's
timeout passes first: ``QueueCallerLeave``, ``QUEUESTATUS=TIMEOUT``, the dialplan continues.
A caller who hangs up while waiting: ``DialEnd CANCEL``, ``QueueCallerAbandon``,
``QueueCallerLeave``.

A member interface is reached through :meth:`Pbx.local_for`: ``Local/x@ctx`` directly,
``PJSIP/<ext>`` through ``PbxConfig.endpoints`` (the simulator has no SIP stack). Not
modelled: strategies other than ringall, penalties, wrap-up time, announcements, positions
of several waiting callers (each caller rings the free members), QueueMemberStatus and
DeviceStateChange events, dynamic members (AMI QueueAdd).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass

from asterisk_sim import event_templates as ev
from asterisk_sim.apps import split_args
from asterisk_sim.channels import Channel
from asterisk_sim.errors import DialplanError
from asterisk_sim.pbx import Pbx

__all__ = ["QueueConfig", "QueueMember", "app_queue", "parse_queues_conf"]

_log = logging.getLogger(__name__)

AGENT = "agent,all"
MIN_RETRY = 0.05  # seconds: a queue without reachable members must not spin


@dataclass(frozen=True, slots=True)
class QueueMember:
    """``member => interface,penalty,membername``."""

    interface: str
    name: str = ""
    penalty: int = 0


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """One queues.conf section, the settings the simulator uses."""

    name: str
    members: tuple[QueueMember, ...] = ()
    strategy: str = "ringall"
    timeout: float = 15.0  # seconds each member rings
    retry: float = 5.0  # seconds between two rounds
    musicclass: str = "default"


def _number(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DialplanError(f"{where}: expected a number, got {text!r}") from None


def parse_queues_conf(text: str) -> dict[str, QueueConfig]:
    """The queues of a queues.conf text (``[general]`` is skipped)."""
    queues: dict[str, QueueConfig] = {}
    name = ""
    settings: dict[str, str] = {}
    members: list[QueueMember] = []

    def flush() -> None:
        if name and name != "general":
            where = f"queues.conf [{name}]"
            queues[name] = QueueConfig(
                name=name,
                members=tuple(members),
                strategy=settings.get("strategy", "ringall"),
                timeout=_number(settings.get("timeout", "15"), where),
                retry=_number(settings.get("retry", "5"), where),
                musicclass=settings.get("musicclass", "default"),
            )

    for line_no, raw in enumerate(text.splitlines(), 1):
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            flush()
            name, settings, members = line[1 : line.find("]")].strip(), {}, []
            continue
        key, sep, value = line.partition("=>") if "=>" in line else line.partition("=")
        if not sep:
            raise DialplanError(f"queues.conf:{line_no}: expected 'key = value': {raw!r}")
        key, value = key.strip().lower(), value.strip()
        if key == "member":
            parts = [p.strip() for p in value.split(",")] + ["", ""]
            penalty = int(parts[1]) if parts[1].isdigit() else 0
            members.append(QueueMember(parts[0], parts[2] or parts[0], penalty))
        else:
            settings[key] = value
    flush()
    return queues


@dataclass(eq=False)
class _Leg:
    member: QueueMember
    one: Channel
    two: Channel


def _agent_event(
    name: str, caller: Channel, leg: _Leg, queue: str, *tail: tuple[str, str]
) -> ev.Headers:
    return [
        ("Event", name),
        ("Privilege", AGENT),
        *ev.snapshot(caller),
        *ev.snapshot(leg.one, "Dest"),
        ("Queue", queue),
        ("Interface", leg.member.interface),
        ("MemberName", leg.member.name),
        *tail,
    ]


def _call_member(pbx: Pbx, ch: Channel, queue: str, member: QueueMember) -> _Leg | None:
    """Create the member's Local pair and start ringing it (None: interface unknown)."""
    target = pbx.local_for(member.interface)
    if target is None:
        _log.warning("queue %s: member %s cannot be reached in the simulator", queue, member)
        return None
    exten, context = target
    pair = pbx.channels.new_local_pair(exten, context, linkedid=ch.linkedid)
    one, two = pair.one, pair.two
    for half in (one, two):
        pbx.emit(ev.newchannel(half))
    one.caller_num, one.caller_name = ch.caller_num, ch.caller_name
    one.connected_num, one.connected_name = ch.caller_num, ch.caller_name
    two.caller_num, two.caller_name = ch.caller_num, ch.caller_name
    two.connected_num, two.connected_name = ch.caller_num, ch.caller_name
    one.exten = ch.exten
    pbx.emit(ev.local_bridge(one, two))
    leg = _Leg(member, one, two)
    pbx.emit(_agent_event("AgentCalled", ch, leg, queue))
    pbx.emit(ev.dial_event("DialBegin", ch, one, ("DialString", member.interface)))
    if pbx.dialplan.has_extension(context, exten):
        pbx.start_pbx(two)
    else:
        pbx.destroy(two, 1)
    return leg


async def _next_frame(
    pbx: Pbx, legs: list[_Leg], caller: Channel, left: float
) -> tuple[_Leg | None, str]:
    """The next control frame of any leg; (None, "CALLER") on hangup; (None, "") on timeout."""
    if caller.is_hungup:
        return None, "CALLER"
    for leg in legs:
        if not leg.one.control.empty():
            return leg, leg.one.control.get_nowait()
    getters = {asyncio.ensure_future(leg.one.control.get()): leg for leg in legs}
    hang = asyncio.ensure_future(caller.hangup_event.wait())
    try:
        await asyncio.wait(
            {*getters, hang}, timeout=pbx.clock.real(left), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for waiter in (*getters, hang):
            if not waiter.done():
                waiter.cancel()
    found: tuple[_Leg | None, str] = (None, "CALLER" if hang.done() else "")
    for getter, leg in getters.items():
        if getter.done() and not getter.cancelled():
            frame = getter.result()
            if found[0] is None and found[1] != "CALLER":
                found = (leg, frame)
            else:
                leg.one.control.put_nowait(frame)  # keep it for the next round
    return found


def _end_leg(pbx: Pbx, ch: Channel, leg: _Leg, status: str) -> None:
    pbx.emit(ev.dial_event("DialEnd", ch, leg.one, ("DialStatus", status)))
    pbx.destroy(leg.one, 0)


async def _ring_round(
    pbx: Pbx, ch: Channel, queue: QueueConfig, ring_for: float
) -> tuple[_Leg | None, bool]:
    """Ring every free member for `ring_for` s: (the leg that answered, caller hung up)."""
    legs = []
    for member in queue.members:
        if member.interface in pbx.busy_members:
            continue
        leg = _call_member(pbx, ch, queue.name, member)
        if leg is not None:
            legs.append(leg)
    start = pbx.clock.now()
    while legs:
        left = ring_for - (pbx.clock.now() - start)
        if left <= 0:
            for leg in legs:
                ring_ms = str(int((pbx.clock.now() - start) * 1000))
                pbx.emit(
                    _agent_event("AgentRingNoAnswer", ch, leg, queue.name, ("RingTime", ring_ms))
                )
                _end_leg(pbx, ch, leg, "NOANSWER")
            return None, False
        leg, frame = await _next_frame(pbx, legs, ch, left)
        if frame == "CALLER":
            for other in legs:
                _end_leg(pbx, ch, other, "CANCEL")
            return None, True
        if leg is None:
            continue
        if frame == "RINGING":
            pbx.emit(ev.dial_event("DialState", ch, leg.one, ("DialStatus", "RINGING")))
        elif frame == "ANSWER":
            pbx.emit(ev.dial_event("DialEnd", ch, leg.one, ("DialStatus", "ANSWER")))
            for other in legs:
                if other is not leg:
                    _end_leg(pbx, ch, other, "CANCEL")
            return leg, False
        else:  # BUSY, or the member's side hung up
            legs.remove(leg)
            _end_leg(pbx, ch, leg, "BUSY" if frame == "BUSY" else "NOANSWER")
    return None, ch.is_hungup


async def _connect(pbx: Pbx, ch: Channel, queue: str, leg: _Leg, joined: float) -> int:
    """Bridge the caller with the member that answered until one of them hangs up."""
    one = leg.one
    hold = str(int(pbx.clock.now() - joined))
    pbx.busy_members.add(leg.member.interface)
    pbx.emit(_agent_event("AgentConnect", ch, leg, queue, ("HoldTime", hold), ("RingTime", "0")))
    pbx.answer(ch)
    bridge_id = str(uuid.uuid4())
    pbx.emit(ev.bridge_event("BridgeCreate", bridge_id, 0))
    one.bridge_id = ch.bridge_id = bridge_id
    pbx.emit(ev.bridge_event("BridgeEnter", bridge_id, 1, one))
    pbx.emit(ev.bridge_event("BridgeEnter", bridge_id, 2, ch))
    one.bridged_with, ch.bridged_with = ch, one
    pbx.set_var(one, "BRIDGEPEER", ch.name)
    pbx.set_var(ch, "BRIDGEPEER", one.name)
    answered = pbx.clock.now()
    waiters = {
        asyncio.ensure_future(one.hangup_event.wait()),
        asyncio.ensure_future(ch.hangup_event.wait()),
    }
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    reason = "caller" if ch.is_hungup else "agent"
    talk = str(int(pbx.clock.now() - answered))
    pbx.emit(
        _agent_event(
            "AgentComplete",
            ch,
            leg,
            queue,
            ("HoldTime", hold),
            ("TalkTime", talk),
            ("Reason", reason),
        )
    )
    pbx.set_var(one, "BRIDGEPEER", "")
    pbx.set_var(ch, "BRIDGEPEER", "")
    pbx.emit(ev.bridge_event("BridgeLeave", bridge_id, 1, one))
    if one.hangup_cause is None:
        one.hangup_cause = 16
    pbx.destroy(one)
    pbx.emit(ev.bridge_event("BridgeLeave", bridge_id, 0, ch))
    one.bridged_with = ch.bridged_with = None
    one.bridge_id = ch.bridge_id = ""
    pbx.emit(ev.bridge_event("BridgeDestroy", bridge_id, 0))
    pbx.busy_members.discard(leg.member.interface)
    if not ch.is_hungup:
        pbx.soft_hangup(ch, event_cause=16, cause=16)
    return -1


def _leave(pbx: Pbx, ch: Channel, queue: str, waiting: list[Channel]) -> None:
    position = waiting.index(ch) + 1 if ch in waiting else 1
    if ch in waiting:
        waiting.remove(ch)
    pbx.emit(
        ev.channel_event(
            "QueueCallerLeave",
            ch,
            ("Queue", queue),
            ("Position", str(position)),
            ("Count", str(len(waiting))),
            privilege=AGENT,
        )
    )


async def app_queue(pbx: Pbx, ch: Channel, data: str) -> int:
    """Queue(name,options,URL,announceoverride,timeout) for a queue in ``config.queues``."""
    args = [*split_args(data), "", "", "", "", ""]
    queue = pbx.config.queues[args[0].strip()]
    try:
        timeout = float(args[4]) if args[4].strip() else None
    except ValueError:
        timeout = None
    joined = pbx.clock.now()
    waiting = pbx.queue_callers.setdefault(queue.name, [])
    waiting.append(ch)
    pbx.emit(
        ev.channel_event(
            "QueueCallerJoin",
            ch,
            ("Queue", queue.name),
            ("Position", str(len(waiting))),
            ("Count", str(len(waiting))),
            privilege=AGENT,
        )
    )
    pbx.start_moh(ch, queue.musicclass)
    abandoned = False
    while not abandoned:
        left = None if timeout is None else timeout - (pbx.clock.now() - joined)
        if left is not None and left <= 0:
            pbx.stop_moh(ch)
            _leave(pbx, ch, queue.name, waiting)
            pbx.set_var(ch, "QUEUESTATUS", "TIMEOUT")
            return 0
        ring_for = queue.timeout if left is None else min(queue.timeout, left)
        leg, abandoned = await _ring_round(pbx, ch, queue, ring_for)
        if leg is not None:
            pbx.stop_moh(ch)
            _leave(pbx, ch, queue.name, waiting)
            return await _connect(pbx, ch, queue.name, leg, joined)
        if not abandoned:
            pause = max(queue.retry, MIN_RETRY)
            if timeout is not None:
                pause = min(pause, max(timeout - (pbx.clock.now() - joined), MIN_RETRY))
            abandoned = not await pbx.wait(ch, pause)
    held = str(int(pbx.clock.now() - joined))
    position = str(waiting.index(ch) + 1 if ch in waiting else 1)
    pbx.emit(
        ev.channel_event(
            "QueueCallerAbandon",
            ch,
            ("Queue", queue.name),
            ("Position", position),
            ("OriginalPosition", position),
            ("HoldTime", held),
            privilege=AGENT,
        )
    )
    pbx.stop_moh(ch)
    _leave(pbx, ch, queue.name, waiting)
    return -1
