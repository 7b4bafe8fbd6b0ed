"""AMI event and list-item builders with Asterisk 22's exact header names and order.

Every template here was derived from the recorded traces in
``tests/fixtures/asterisk-traces/*.ami.jsonl`` (see the README there, section 4.1): events start
with ``Event`` and ``Privilege``; a channel snapshot is the 14 headers ``Channel`` ..
``Linkedid`` (optionally prefixed, e.g. ``Dest``/``LocalOne``); ``ActionID`` sits where each
list event puts it (second line, after ``Privilege``, or last). A builder returns the header
pairs; the AMI server encodes them with ``acd.protocol.ami.encode_message``.
"""

from __future__ import annotations

from collections.abc import Iterable

from asterisk_sim.channels import Channel

Headers = list[tuple[str, str]]

CAUSE_TEXT: dict[int, str] = {
    0: "Unknown",
    1: "Unallocated (unassigned) number",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    21: "Call Rejected",
    34: "Circuit/channel congestion",
}

CALL = "call,all"
DIALPLAN = "dialplan,all"


def snapshot(ch: Channel, prefix: str = "") -> Headers:
    """The channel snapshot block, as in Newchannel (prefix ``Dest``, ``LocalOne``, ...)."""
    return [
        (f"{prefix}Channel", ch.name),
        (f"{prefix}ChannelState", str(int(ch.state))),
        (f"{prefix}ChannelStateDesc", ch.state_desc),
        (f"{prefix}CallerIDNum", ch.caller_num),
        (f"{prefix}CallerIDName", ch.caller_name),
        (f"{prefix}ConnectedLineNum", ch.connected_num),
        (f"{prefix}ConnectedLineName", ch.connected_name),
        (f"{prefix}Language", ch.language),
        (f"{prefix}AccountCode", ch.accountcode),
        (f"{prefix}Context", ch.context),
        (f"{prefix}Exten", ch.exten),
        (f"{prefix}Priority", str(ch.priority)),
        (f"{prefix}Uniqueid", ch.uniqueid),
        (f"{prefix}Linkedid", ch.linkedid),
    ]


def channel_event(
    name: str, ch: Channel, *extra: tuple[str, str], privilege: str = CALL
) -> Headers:
    """``Event``, ``Privilege``, the channel snapshot, then `extra` headers."""
    return [("Event", name), ("Privilege", privilege), *snapshot(ch), *extra]


def newchannel(ch: Channel) -> Headers:
    return channel_event("Newchannel", ch)


def newstate(ch: Channel) -> Headers:
    return channel_event("Newstate", ch)


def newcallerid(ch: Channel) -> Headers:
    return channel_event(
        "NewCallerid", ch, ("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")
    )


def newconnectedline(ch: Channel) -> Headers:
    return channel_event("NewConnectedLine", ch)


def newexten(ch: Channel, application: str, app_data: str) -> Headers:
    return channel_event(
        "Newexten",
        ch,
        ("Extension", ch.exten),
        ("Application", application),
        ("AppData", app_data),
        privilege=DIALPLAN,
    )


def varset(ch: Channel | None, variable: str, value: str) -> Headers:
    """A channel VarSet, or the global form (``Channel: none``, ``Uniqueid: none``)."""
    if ch is None:
        return [
            ("Event", "VarSet"),
            ("Privilege", DIALPLAN),
            ("Channel", "none"),
            ("Uniqueid", "none"),
            ("Variable", variable),
            ("Value", value),
        ]
    return channel_event("VarSet", ch, ("Variable", variable), ("Value", value), privilege=DIALPLAN)


def hangup(ch: Channel, cause: int) -> Headers:
    return channel_event(
        "Hangup", ch, ("Cause", str(cause)), ("Cause-txt", CAUSE_TEXT.get(cause, "Unknown"))
    )


def hangup_request(ch: Channel, cause: int, *, soft: bool) -> Headers:
    return channel_event(
        "SoftHangupRequest" if soft else "HangupRequest", ch, ("Cause", str(cause))
    )


def local_bridge(one: Channel, two: Channel) -> Headers:
    return [
        ("Event", "LocalBridge"),
        ("Privilege", CALL),
        *snapshot(one, "LocalOne"),
        *snapshot(two, "LocalTwo"),
        ("Context", two.context),
        ("Exten", two.exten),
        ("LocalOptimization", "Yes"),
    ]


def dial_event(name: str, caller: Channel | None, dest: Channel, tail: tuple[str, str]) -> Headers:
    """DialBegin/DialState/DialEnd; an originate has no caller, so no ``Channel`` block."""
    headers: Headers = [("Event", name), ("Privilege", CALL)]
    if caller is not None:
        headers += snapshot(caller)
    headers += snapshot(dest, "Dest")
    headers.append(tail)
    return headers


def bridge_block(bridge_id: str, num_channels: int) -> Headers:
    return [
        ("BridgeUniqueid", bridge_id),
        ("BridgeType", "basic"),
        ("BridgeTechnology", "simple_bridge"),
        ("BridgeCreator", "<unknown>"),
        ("BridgeName", "<unknown>"),
        ("BridgeNumChannels", str(num_channels)),
        ("BridgeVideoSourceMode", "none"),
    ]


def bridge_event(name: str, bridge_id: str, num: int, ch: Channel | None = None) -> Headers:
    headers: Headers = [("Event", name), ("Privilege", CALL), *bridge_block(bridge_id, num)]
    if ch is not None:
        headers += snapshot(ch)
    return headers


def dtmf_begin(ch: Channel, digit: str) -> Headers:
    return channel_event(
        "DTMFBegin", ch, ("Digit", digit), ("Direction", "Received"), privilege="dtmf,all"
    )


def dtmf_end(ch: Channel, digit: str, duration_ms: int) -> Headers:
    return channel_event(
        "DTMFEnd",
        ch,
        ("Digit", digit),
        ("DurationMs", str(duration_ms)),
        ("Direction", "Received"),
        privilege="dtmf,all",
    )


def agi_exec_start(ch: Channel, command_id: str, command: str) -> Headers:
    return channel_event(
        "AGIExecStart", ch, ("CommandId", command_id), ("Command", command), privilege="agi,all"
    )


def agi_exec_end(ch: Channel, command_id: str, command: str, code: str, result: str) -> Headers:
    return channel_event(
        "AGIExecEnd",
        ch,
        ("CommandId", command_id),
        ("Command", command),
        ("ResultCode", code),
        ("Result", result),
        privilege="agi,all",
    )


def originate_response(
    action_id: str | None,
    *,
    success: bool,
    channel: str,
    target: Iterable[tuple[str, str]],
    uniqueid: str,
    caller_num: str,
    caller_name: str,
    reason: int | None = None,
) -> Headers:
    headers: Headers = [("Event", "OriginateResponse"), ("Privilege", CALL)]
    if action_id is not None:
        headers.append(("ActionID", action_id))
    headers += [("Response", "Success" if success else "Failure"), ("Channel", channel)]
    headers += list(target)
    headers += [
        ("Reason", str(reason if reason is not None else (4 if success else 0))),
        ("Uniqueid", uniqueid),
        ("CallerIDNum", caller_num),
        ("CallerIDName", caller_name),
    ]
    return headers


def fully_booted() -> Headers:
    return [
        ("Event", "FullyBooted"),
        ("Privilege", "system,all"),
        ("Uptime", "0"),
        ("LastReload", "0"),
        ("Status", "Fully Booted"),
    ]


def shutdown() -> Headers:
    return [
        ("Event", "Shutdown"),
        ("Privilege", "system,all"),
        ("Shutdown", "Cleanly"),
        ("Restart", "False"),
    ]


def core_show_channel(ch: Channel, action_id: str | None, duration: str) -> Headers:
    headers: Headers = [("Event", "CoreShowChannel")]
    if action_id is not None:
        headers.append(("ActionID", action_id))
    headers += snapshot(ch)
    headers += [
        ("Application", ch.application),
        ("ApplicationData", ch.app_data),
        ("Duration", duration),
        ("BridgeId", ch.bridge_id),
    ]
    return headers


def status_item(ch: Channel, action_id: str | None, seconds: int) -> Headers:
    headers: Headers = [("Event", "Status"), ("Privilege", "Call"), *snapshot(ch)]
    headers += [
        ("Type", ch.tech),
        ("DNID", ch.dnid),
        ("EffectiveConnectedLineNum", ch.connected_num),
        ("EffectiveConnectedLineName", ch.connected_name),
        ("TimeToHangup", "0"),
        ("BridgeID", ch.bridge_id),
        ("Application", ch.application),
        ("Data", ch.app_data),
        ("Nativeformats", "(slin)"),
        ("Readformat", "slin"),
        ("Readtrans", ""),
        ("Writeformat", "slin"),
        ("Writetrans", ""),
        ("Callgroup", "0"),
        ("Pickupgroup", "0"),
        ("Seconds", str(seconds)),
    ]
    if action_id is not None:
        headers.append(("ActionID", action_id))
    return headers


def list_complete(name: str, action_id: str | None, count: int, *extra: tuple[str, str]) -> Headers:
    headers: Headers = [("Event", name)]
    if action_id is not None:
        headers.append(("ActionID", action_id))
    headers += [("EventList", "Complete"), ("ListItems", str(count)), *extra]
    return headers
