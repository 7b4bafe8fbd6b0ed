"""The Dial application for Local channel targets, with the bridge it creates on answer.

Event order as in ``agent-dial*.ami.jsonl`` and ``ami-actions.ami.jsonl``: the dial variables
cleared, the new Local pair (its ``;1`` takes the caller's extension as caller id number and
the caller's id as connected line), ``LocalBridge``, ``DialBegin``; then ``DialState RINGING``
(with ``RINGTIME``), or ``DialEnd`` with ANSWER / NOANSWER / BUSY / CANCEL. On answer a basic
bridge joins the caller and the agent's ``;1``; when either side leaves, the ``BRIDGEPEER``
variables are cleared, both leave, the agent leg hangs up and Dial returns -1 with
``ANSWEREDTIME``/``DIALEDTIME`` set. NOANSWER and BUSY return 0.
"""

from __future__ import annotations

import asyncio
import uuid

from asterisk_sim import event_templates as ev
from asterisk_sim.apps import split_args
from asterisk_sim.channels import Channel
from asterisk_sim.pbx import Pbx

DIAL_VARS = (
    "DIALSTATUS",
    "DIALEDPEERNUMBER",
    "DIALEDPEERNAME",
    "ANSWEREDTIME",
    "ANSWEREDTIME_MS",
    "DIALEDTIME",
    "DIALEDTIME_MS",
    "RINGTIME",
    "RINGTIME_MS",
    "PROGRESSTIME",
    "PROGRESSTIME_MS",
)


def _local_target(target: str) -> tuple[str, str] | None:
    tech, _, rest = target.strip().partition("/")
    if tech.lower() != "local" or "@" not in rest:
        return None
    exten, _, context = rest.partition("@")
    return exten, context.split("/", 1)[0]


async def _next_control(pbx: Pbx, one: Channel, caller: Channel, left: float | None) -> str:
    """The dialled leg's next control frame; "CALLER" if the caller hung up; "" on timeout."""
    if caller.is_hungup:
        return "CALLER"
    if not one.control.empty():
        return one.control.get_nowait()
    getter = asyncio.ensure_future(one.control.get())
    hang = asyncio.ensure_future(caller.hangup_event.wait())
    try:
        await asyncio.wait(
            {getter, hang},
            timeout=None if left is None else pbx.clock.real(left),
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        for waiter in (getter, hang):
            if not waiter.done():
                waiter.cancel()
    if getter.done() and not getter.cancelled():
        return getter.result()
    if hang.done():
        return "CALLER"
    return ""


async def app_dial(pbx: Pbx, ch: Channel, data: str) -> int:
    """Dial(Local/<exten>@<context>[&...],timeout,options)."""
    args = split_args(data)
    timeout = float(args[1]) if len(args) > 1 and args[1].strip() else None
    for name in DIAL_VARS:
        pbx.set_var(ch, name, "")
    target = _local_target(args[0].split("&")[0])
    if target is None or ch.is_hungup:
        pbx.set_var(ch, "DIALSTATUS", "CHANUNAVAIL")
        return 0
    exten, context = target
    dialed = f"{exten}@{context}"
    pair = pbx.channels.new_local_pair(exten, context, linkedid=ch.linkedid)
    one, two = pair.one, pair.two
    pbx.emit(ev.newchannel(one))
    pbx.emit(ev.newchannel(two))
    pbx.set_var(one, "DIALEDPEERNUMBER", dialed)
    one.caller_num, one.caller_name = ch.exten, ch.caller_name
    one.connected_num, one.connected_name = ch.caller_num, ch.caller_name
    one.exten = ch.exten
    one.application, one.app_data = "AppDial", "(Outgoing Line)"
    pbx.emit(ev.newexten(one, "AppDial", "(Outgoing Line)"))
    pbx.emit(ev.newcallerid(one))
    pbx.emit(ev.newconnectedline(one))
    pbx.set_var(two, "DIALEDPEERNUMBER", dialed)
    two.caller_num, two.caller_name = one.connected_num, one.connected_name
    two.connected_num, two.connected_name = one.caller_num, one.caller_name
    pbx.emit(ev.newcallerid(two))
    pbx.emit(ev.newconnectedline(two))
    pbx.emit(ev.local_bridge(one, two))
    pbx.emit(ev.dial_event("DialBegin", ch, one, ("DialString", dialed)))
    if pbx.dialplan.has_extension(context, exten):
        pbx.start_pbx(two)
    else:
        pbx.destroy(two, 1)
    start = pbx.clock.now()
    deadline = None if timeout is None else start + timeout
    while True:
        left = None if deadline is None else deadline - pbx.clock.now()
        if left is not None and left <= 0:
            frame = ""
        else:
            frame = await _next_control(pbx, one, ch, left)
        if frame == "RINGING":
            ring = pbx.clock.now() - start
            pbx.set_var(ch, "RINGTIME", str(int(ring)))
            pbx.set_var(ch, "RINGTIME_MS", str(int(ring * 1000)))
            pbx.emit(ev.dial_event("DialState", ch, one, ("DialStatus", "RINGING")))
            continue
        if frame == "ANSWER":
            return await _bridge(pbx, ch, one, dialed, start)
        if frame == "":
            status = "NOANSWER"
        elif frame == "CALLER":
            status = "CANCEL"
        elif frame == "BUSY" or two.hangup_cause == 17:
            status = "BUSY"
        elif two.hangup_cause == 34:
            status = "CONGESTION"
        else:
            status = "NOANSWER"
        pbx.emit(ev.dial_event("DialEnd", ch, one, ("DialStatus", status)))
        if status == "NOANSWER":
            pbx.hangup_peer(one, 0)
            pbx.set_var(ch, "DIALSTATUS", status)
            asyncio.get_running_loop().call_soon(pbx.destroy, one, 0)
            return 0
        pbx.destroy(one, 0)
        pbx.set_var(ch, "DIALSTATUS", status)
        return -1 if status == "CANCEL" else 0


async def _bridge(pbx: Pbx, ch: Channel, one: Channel, dialed: str, start: float) -> int:
    pbx.set_var(ch, "DIALSTATUS", "ANSWER")
    pbx.set_var(ch, "DIALEDPEERNAME", one.name)
    pbx.set_var(ch, "DIALEDPEERNUMBER", dialed)
    pbx.emit(ev.dial_event("DialEnd", ch, one, ("DialStatus", "ANSWER")))
    pbx.answer(ch)
    bridge_id = str(uuid.uuid4())
    pbx.emit(ev.bridge_event("BridgeCreate", bridge_id, 0))
    one.exten = ""
    pbx.emit(ev.newexten(one, "AppDial", "(Outgoing Line)"))
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
    pbx.set_var(one, "BRIDGEPEER", "")
    pbx.set_var(ch, "BRIDGEPEER", "")
    pbx.emit(ev.bridge_event("BridgeLeave", bridge_id, 1, one))
    if one.hangup_cause is None:
        one.hangup_cause = 16
    pbx.destroy(one)
    pbx.emit(ev.bridge_event("BridgeLeave", bridge_id, 0, ch))
    one.bridged_with = ch.bridged_with = None
    one.bridge_id = ch.bridge_id = ""
    now = pbx.clock.now()
    talk, total = now - answered, now - start
    pbx.set_var(ch, "ANSWEREDTIME", str(int(talk)))
    pbx.set_var(ch, "ANSWEREDTIME_MS", str(int(talk * 1000)))
    pbx.set_var(ch, "DIALEDTIME", str(int(total)))
    pbx.set_var(ch, "DIALEDTIME_MS", str(int(total * 1000)))
    pbx.set_var(ch, "DIALSTATUS", "ANSWER")
    asyncio.get_running_loop().call_soon(pbx.emit, ev.bridge_event("BridgeDestroy", bridge_id, 0))
    return -1
