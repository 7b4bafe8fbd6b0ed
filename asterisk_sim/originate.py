"""Originate of a Local channel (manager.c action_originate + the Local channel driver).

Sequence as in the traces (README 3 and 4.1 "Originate"): ``Newchannel`` ``;1`` (Down) and
``;2`` (Ring); ``Newexten`` ``AppDial2 (Outgoing Line)`` on ``;1``; the originate's variables
as ``VarSet`` on ``;1``, its caller id (``NewCallerid``/``NewConnectedLine``), the same for
``;2``; ``LocalBridge``; ``DialBegin`` without a ``Channel`` block; ``;2`` runs the dialplan.
When ``;2`` answers: ``DialEnd ANSWER``, ``OriginateResponse Success Reason 4`` and ``;1`` runs
the Application (or the dialplan at Context/Exten/Priority). An unknown extension hangs both
halves up (cause 0) and gives ``OriginateResponse Failure Reason 0 Uniqueid <unknown>``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from asterisk_sim import event_templates as ev
from asterisk_sim.channels import UNKNOWN, Channel
from asterisk_sim.pbx import Pbx

ChannelRunner = Callable[[Channel], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class OriginateRequest:
    """What an AMI Originate (or the facade) asks for."""

    channel: str
    application: str | None = None
    data: str = ""
    context: str | None = None
    exten: str | None = None
    priority: int = 1
    caller_id: tuple[str, str] | None = None  # (name, number)
    variables: tuple[tuple[str, str], ...] = ()
    channel_id: str | None = None
    other_channel_id: str | None = None
    timeout: float = 30.0
    action_id: str | None = None
    runner: ChannelRunner | None = field(default=None, compare=False)
    on_channels: Callable[[Channel, Channel], None] | None = field(default=None, compare=False)


@dataclass
class OriginateOutcome:
    """Result of an originate: the two halves when it was answered."""

    success: bool
    one: Channel | None = None
    two: Channel | None = None
    reason: int = 0


def parse_caller_id(text: str) -> tuple[str, str]:
    """``Alice <+15551230001>`` -> ("Alice", "+15551230001"); a bare number has no name."""
    text = text.strip()
    if "<" in text and text.endswith(">"):
        name, _, num = text[:-1].partition("<")
        return name.strip().strip('"'), num.strip()
    return "", text


def _target_headers(req: OriginateRequest) -> list[tuple[str, str]]:
    if req.application is not None:
        return [("Application", req.application), ("Data", req.data)]
    return [("Context", req.context or ""), ("Exten", req.exten or "")]


def _respond(
    pbx: Pbx, req: OriginateRequest, outcome: OriginateOutcome, one: Channel | None
) -> None:
    name, num = req.caller_id or ("", "")
    if outcome.success and one is not None:
        pbx.emit(
            ev.originate_response(
                req.action_id,
                success=True,
                channel=one.name,
                target=_target_headers(req),
                uniqueid=one.uniqueid,
                caller_num=one.caller_num,
                caller_name=one.caller_name,
            )
        )
        return
    pbx.emit(
        ev.originate_response(
            req.action_id,
            success=False,
            channel=req.channel,
            target=_target_headers(req),
            uniqueid=UNKNOWN,
            caller_num=num or UNKNOWN,
            caller_name=name or UNKNOWN,
            reason=outcome.reason,
        )
    )


async def originate(pbx: Pbx, req: OriginateRequest) -> OriginateOutcome:
    """Run the whole originate; returns once ``;1`` was answered (or the attempt failed).

    ``;1`` keeps running its application in the background after this returns.
    """
    tech, _, rest = req.channel.partition("/")
    if tech.lower() != "local" or "@" not in rest:
        outcome = OriginateOutcome(False)
        _respond(pbx, req, outcome, None)
        return outcome
    exten, _, context = rest.partition("@")
    context = context.split("/", 1)[0]
    pair = pbx.channels.new_local_pair(exten, context, ids=(req.channel_id, req.other_channel_id))
    one, two = pair.one, pair.two
    if req.on_channels is not None:
        req.on_channels(one, two)
    pbx.emit(ev.newchannel(one))
    pbx.emit(ev.newchannel(two))
    one.application, one.app_data = "AppDial2", "(Outgoing Line)"
    pbx.emit(ev.newexten(one, "AppDial2", "(Outgoing Line)"))
    for key, value in req.variables:
        pbx.set_var(one, key, value)
    if req.caller_id is not None:
        name, num = req.caller_id
        one.caller_name, one.caller_num = name or UNKNOWN, num or UNKNOWN
        one.connected_name, one.connected_num = one.caller_name, one.caller_num
        pbx.emit(ev.newcallerid(one))
        pbx.emit(ev.newconnectedline(one))
    for key, value in req.variables:
        pbx.set_var(two, key, value)
    two.caller_name, two.caller_num = one.connected_name, one.connected_num
    two.connected_name, two.connected_num = one.caller_name, one.caller_num
    if req.caller_id is not None:
        pbx.emit(ev.newcallerid(two))
        pbx.emit(ev.newconnectedline(two))
    if not pbx.dialplan.has_extension(context, exten):
        two.peer_notified = True
        pbx.destroy(two, 0)
        pbx.destroy(one, 0)
        outcome = OriginateOutcome(False)
        _respond(pbx, req, outcome, None)
        return outcome
    pbx.emit(ev.local_bridge(one, two))
    pbx.emit(ev.dial_event("DialBegin", None, one, ("DialString", f"{exten}@{context}")))
    pbx.start_pbx(two)
    status, reason = await _await_answer(pbx, one, req.timeout)
    pbx.emit(ev.dial_event("DialEnd", None, one, ("DialStatus", status)))
    if status != "ANSWER":
        if not one.gone:
            pbx.destroy(one, 0)
        outcome = OriginateOutcome(False, reason=reason)
        _respond(pbx, req, outcome, None)
        return outcome
    outcome = OriginateOutcome(True, one, two, 4)
    _respond(pbx, req, outcome, one)
    pbx.spawn(_run_first_half(pbx, one, req), f"originate {one.name}")
    return outcome


async def _await_answer(pbx: Pbx, one: Channel, timeout: float) -> tuple[str, int]:
    deadline = pbx.clock.now() + timeout
    while True:
        left = deadline - pbx.clock.now()
        if left <= 0:
            return "NOANSWER", 3
        try:
            frame = await asyncio.wait_for(one.control.get(), pbx.clock.real(left))
        except TimeoutError:
            return "NOANSWER", 3
        if frame == "ANSWER":
            return "ANSWER", 4
        if frame == "BUSY":
            return "BUSY", 5
        if frame == "HANGUP":
            return "CANCEL", 1


async def _run_first_half(pbx: Pbx, one: Channel, req: OriginateRequest) -> None:
    try:
        if req.runner is not None:
            one.application, one.app_data = "AppDial2", "(Outgoing Line)"
            await req.runner(one)
        elif req.application is not None:
            one.application, one.app_data = req.application, req.data
            await pbx.exec_app(one, req.application, req.data)
            if one.redirect_to is not None and not one.is_hungup:
                await pbx.run_pbx(one)
                return
        else:
            one.context = req.context or one.context
            one.exten = req.exten or one.exten
            one.priority = req.priority
            await pbx.run_pbx(one)
            return
    finally:
        if not one.gone:
            if one.hangup_cause is None:
                one.hangup_cause = 0 if one.soft_hangup else 16
            # The peer hears first; give its reader a turn before our Hangup (trace order).
            pbx.hangup_peer(one, one.hangup_cause)
            for _ in range(3):
                await asyncio.sleep(0)
            pbx.destroy(one)
