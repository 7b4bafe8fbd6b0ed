"""Translation of AMI event messages into the typed PBX events of acd.domain.pbx_events.

Theory of operation
-------------------

Follows tests/fixtures/asterisk-traces/README.md sections 4.1 (AMI) and 4.4 (channels and
ids), checked against every event in the recorded ``*.ami.jsonl`` traces.

* :func:`decode_event` looks the ``Event`` name up in a table of decoder functions. A name
  that is not in the table becomes :class:`UnknownEvent` with all its headers: an unknown
  event is never an error (Asterisk adds events between versions).
* Most events carry Asterisk's *channel block*: ``Channel, ChannelState, ChannelStateDesc,
  CallerIDNum, CallerIDName, ConnectedLineNum, ConnectedLineName, Language, AccountCode,
  Context, Exten, Priority, Uniqueid, Linkedid``. Events about a second channel repeat the
  block with a prefix (``Dest``, ``LocalOne``, ``LocalTwo``, ``Spyer``, ``Spyee``). Asterisk
  always writes the whole block, so the block is all-or-nothing: a block that is present but
  lacks one of its headers, or whose ``ChannelState``/``Priority`` is not an integer, is a
  :class:`MalformedEventError` naming the event and the header. Whether the block is present
  is decided by its ``Channel`` header.
* Optional channels: the dial events of an originate carry no ``Channel`` (only ``Dest*``),
  and a global ``VarSet`` says ``Channel: none``; both decode to ``channel=None``.
* ``<unknown>`` is how Asterisk spells an absent caller id, connected line, bridge creator or
  name; it decodes to ``""``. In ``OriginateResponse`` a ``Uniqueid: <unknown>`` (failed
  originate) decodes to ``unique_id=None``.
* Header names are matched case-insensitively (the ``Status`` list item even says
  ``Privilege: Call`` with a capital C); event names are matched exactly.
* Integers and booleans (Asterisk's ``ast_true``/``ast_false`` spellings: Yes/No, True/False,
  1/0, on/off) that do not parse are a :class:`MalformedEventError`, as is a missing header that
  the typed event needs. Purely informational headers the domain does not need are ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from operator import itemgetter

from acd.domain.pbx_events import (
    AgentCalled,
    AgentComplete,
    AgentConnect,
    AgentRingNoAnswer,
    AGIExecEnd,
    AGIExecStart,
    BridgeCreate,
    BridgeDestroy,
    BridgeEnter,
    BridgeInfo,
    BridgeLeave,
    ChannelHungup,
    ChannelSnapshot,
    ChanSpyStart,
    ChanSpyStop,
    CoreShowChannel,
    CoreShowChannelsComplete,
    DeviceStateChange,
    DialBegin,
    DialEnd,
    DialState,
    DTMFBegin,
    DTMFEnd,
    FullyBooted,
    Hangup,
    HangupRequest,
    LocalBridge,
    MixMonitorMute,
    MixMonitorStart,
    MixMonitorStop,
    MusicOnHoldStart,
    MusicOnHoldStop,
    NewCallerid,
    Newchannel,
    NewConnectedLine,
    Newexten,
    Newstate,
    OriginateResponse,
    PbxEvent,
    QueueCallerAbandon,
    QueueCallerJoin,
    QueueCallerLeave,
    QueueMemberAdded,
    QueueMemberInfo,
    QueueMemberPause,
    QueueMemberRemoved,
    QueueMemberStatus,
    Shutdown,
    SoftHangupRequest,
    Status,
    StatusComplete,
    UnknownEvent,
    UserEvent,
    VarSet,
)
from acd.protocol.ami import AmiMessage, AmiProtocolError

__all__ = ["CHANNEL_BLOCK", "EVENT_DECODERS", "MalformedEventError", "decode_event"]

#: The headers of Asterisk's channel block, in wire order (without prefix).
CHANNEL_BLOCK: tuple[str, ...] = (
    "Channel",
    "ChannelState",
    "ChannelStateDesc",
    "CallerIDNum",
    "CallerIDName",
    "ConnectedLineNum",
    "ConnectedLineName",
    "Language",
    "AccountCode",
    "Context",
    "Exten",
    "Priority",
    "Uniqueid",
    "Linkedid",
)
_CHANNEL_BLOCK_LOWER = frozenset(name.lower() for name in CHANNEL_BLOCK)
_UNKNOWN = "<unknown>"
_TRUE = frozenset({"yes", "true", "y", "t", "1", "on"})
_FALSE = frozenset({"no", "false", "n", "f", "0", "off"})


class MalformedEventError(AmiProtocolError):
    """A known AMI event lacks a header its type needs, or a header value does not parse."""

    error_id = "ami-malformed-event"

    def __init__(self, event: str, header: str, problem: str) -> None:
        super().__init__(f"AMI event {event!r}: header {header!r} {problem}")
        self.event = event
        self.header = header


def _known(value: str) -> str:
    return "" if value == _UNKNOWN else value


def _block_keys(prefix: str) -> tuple[str, ...]:
    """The channel block's header names with `prefix`, in ChannelSnapshot's field order."""
    return tuple(
        prefix + name
        for name in (
            "Channel",
            "Uniqueid",
            "Linkedid",
            "ChannelState",
            "ChannelStateDesc",
            "CallerIDNum",
            "CallerIDName",
            "ConnectedLineNum",
            "ConnectedLineName",
            "Language",
            "AccountCode",
            "Context",
            "Exten",
            "Priority",
        )
    )


#: Prefix -> a getter of the prefixed channel block's values (a tuple; KeyError if one lacks).
_BLOCK_GETTERS: dict[str, Callable[[Mapping[str, str]], tuple[str, ...]]] = {
    prefix: itemgetter(*_block_keys(prefix))
    for prefix in ("", "Dest", "LocalOne", "LocalTwo", "Spyer", "Spyee")
}


class _Reader:
    """Typed access to one event's headers; every failure names the event and the header.

    Lookups try Asterisk's exact spelling first (AmiMessage.exact_index), then fall back to
    the message's case-insensitive get().
    """

    __slots__ = ("exact", "msg", "name")

    def __init__(self, msg: AmiMessage, name: str, exact: Mapping[str, str]) -> None:
        self.msg = msg
        self.name = name
        self.exact = exact  # msg.exact_index()

    def has(self, key: str) -> bool:
        return key in self.exact or key in self.msg

    def text(self, key: str) -> str:
        value = self.exact.get(key)
        if value is None:
            value = self.msg.get(key)
            if value is None:
                raise MalformedEventError(self.name, key, "is missing")
        return value

    def opt(self, key: str, default: str = "") -> str:
        value = self.exact.get(key)
        if value is None:
            value = self.msg.get(key)
            if value is None:
                return default
        return value

    def integer(self, key: str) -> int:
        return self._to_int(key, self.text(key))

    def opt_integer(self, key: str) -> int | None:
        value = self.exact.get(key)
        if value is None:
            value = self.msg.get(key)
        return None if value is None or value == "" else self._to_int(key, value)

    def _to_int(self, key: str, value: str) -> int:
        try:
            return int(value)
        except ValueError:
            raise MalformedEventError(self.name, key, f"is not an integer: {value!r}") from None

    def flag(self, key: str) -> bool:
        value = self.text(key)
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise MalformedEventError(self.name, key, f"is not a boolean: {value!r}")

    def opt_flag(self, key: str, default: bool = False) -> bool:
        return self.flag(key) if self.has(key) else default

    def channel(self, prefix: str = "") -> ChannelSnapshot:
        # Fast path: every header spelled as Asterisk spells it, both integers plain.
        try:
            (
                name,
                unique_id,
                linked_id,
                state,
                state_desc,
                cid_num,
                cid_name,
                cl_num,
                cl_name,
                language,
                account_code,
                context,
                exten,
                priority,
            ) = _BLOCK_GETTERS[prefix](self.exact)
            return ChannelSnapshot(
                name,
                unique_id,
                linked_id,
                int(state),
                state_desc,
                "" if cid_num == _UNKNOWN else cid_num,
                "" if cid_name == _UNKNOWN else cid_name,
                "" if cl_num == _UNKNOWN else cl_num,
                "" if cl_name == _UNKNOWN else cl_name,
                language,
                account_code,
                context,
                exten,
                int(priority),
            )
        except (KeyError, ValueError):
            return self._channel_checked(prefix)

    def _channel_checked(self, prefix: str) -> ChannelSnapshot:
        """The channel block read header by header, raising MalformedEventError on a fault."""
        return ChannelSnapshot(
            name=self.text(prefix + "Channel"),
            unique_id=self.text(prefix + "Uniqueid"),
            linked_id=self.text(prefix + "Linkedid"),
            state=self.integer(prefix + "ChannelState"),
            state_desc=self.text(prefix + "ChannelStateDesc"),
            caller_id_num=_known(self.text(prefix + "CallerIDNum")),
            caller_id_name=_known(self.text(prefix + "CallerIDName")),
            connected_line_num=_known(self.text(prefix + "ConnectedLineNum")),
            connected_line_name=_known(self.text(prefix + "ConnectedLineName")),
            language=self.text(prefix + "Language"),
            account_code=self.text(prefix + "AccountCode"),
            context=self.text(prefix + "Context"),
            exten=self.text(prefix + "Exten"),
            priority=self.integer(prefix + "Priority"),
        )

    def opt_channel(self, prefix: str = "") -> ChannelSnapshot | None:
        key = prefix + "Channel"
        name = self.exact.get(key)
        if name is None:
            name = self.msg.get(key)
        if name is None or name == "none":
            return None
        return self.channel(prefix)

    def bridge(self) -> BridgeInfo:
        return BridgeInfo(
            unique_id=self.text("BridgeUniqueid"),
            type=self.text("BridgeType"),
            technology=self.text("BridgeTechnology"),
            creator=_known(self.text("BridgeCreator")),
            name=_known(self.text("BridgeName")),
            num_channels=self.integer("BridgeNumChannels"),
            video_source_mode=self.opt("BridgeVideoSourceMode"),
        )

    def queue_member(self) -> QueueMemberInfo:
        return QueueMemberInfo(
            queue=self.text("Queue"),
            member_name=self.text("MemberName"),
            interface=self.text("Interface"),
            state_interface=self.opt("StateInterface"),
            membership=self.opt("Membership"),
            penalty=self.integer("Penalty"),
            calls_taken=self.integer("CallsTaken"),
            last_call=self.integer("LastCall"),
            last_pause=self.opt_integer("LastPause") or 0,
            login_time=self.opt_integer("LoginTime") or 0,
            in_call=self.opt_flag("InCall"),
            status=self.integer("Status"),
            paused=self.flag("Paused"),
            paused_reason=self.opt("PausedReason"),
            ring_in_use=self.opt_flag("Ringinuse"),
            wrapup_time=self.opt_integer("Wrapuptime") or 0,
        )


# --- one decoder per event ----------------------------------------------------------------


def _fully_booted(r: _Reader) -> FullyBooted:
    return FullyBooted(
        status=r.opt("Status"),
        uptime=r.opt_integer("Uptime"),
        last_reload=r.opt_integer("LastReload"),
    )


def _shutdown(r: _Reader) -> Shutdown:
    return Shutdown(shutdown=r.text("Shutdown"), restart=r.flag("Restart"))


def _newchannel(r: _Reader) -> Newchannel:
    return Newchannel(channel=r.channel())


def _newstate(r: _Reader) -> Newstate:
    return Newstate(channel=r.channel())


def _new_callerid(r: _Reader) -> NewCallerid:
    return NewCallerid(channel=r.channel(), cid_calling_pres=r.opt("CID-CallingPres"))


def _new_connected_line(r: _Reader) -> NewConnectedLine:
    return NewConnectedLine(channel=r.channel())


def _newexten(r: _Reader) -> Newexten:
    return Newexten(
        channel=r.channel(),
        extension=r.opt("Extension"),
        application=r.text("Application"),
        app_data=r.opt("AppData"),
    )


def _varset(r: _Reader) -> VarSet:
    return VarSet(channel=r.opt_channel(), variable=r.text("Variable"), value=r.opt("Value"))


def _hangup(r: _Reader) -> Hangup:
    return Hangup(channel=r.channel(), cause=r.integer("Cause"), cause_txt=r.opt("Cause-txt"))


def _hangup_request(r: _Reader) -> HangupRequest:
    return HangupRequest(channel=r.channel(), cause=r.opt_integer("Cause"))


def _soft_hangup_request(r: _Reader) -> SoftHangupRequest:
    return SoftHangupRequest(channel=r.channel(), cause=r.opt_integer("Cause"))


def _local_bridge(r: _Reader) -> LocalBridge:
    return LocalBridge(
        local_one=r.channel("LocalOne"),
        local_two=r.channel("LocalTwo"),
        context=r.opt("Context"),
        exten=r.opt("Exten"),
        local_optimization=r.opt_flag("LocalOptimization"),
    )


def _device_state_change(r: _Reader) -> DeviceStateChange:
    return DeviceStateChange(device=r.text("Device"), state=r.text("State"))


def _moh_start(r: _Reader) -> MusicOnHoldStart:
    return MusicOnHoldStart(channel=r.channel(), music_class=r.opt("Class"))


def _moh_stop(r: _Reader) -> MusicOnHoldStop:
    return MusicOnHoldStop(channel=r.channel())


def _dial_begin(r: _Reader) -> DialBegin:
    return DialBegin(
        channel=r.opt_channel(), dest=r.channel("Dest"), dial_string=r.opt("DialString")
    )


def _dial_state(r: _Reader) -> DialState:
    return DialState(
        channel=r.opt_channel(), dest=r.channel("Dest"), dial_status=r.text("DialStatus")
    )


def _dial_end(r: _Reader) -> DialEnd:
    return DialEnd(
        channel=r.opt_channel(),
        dest=r.channel("Dest"),
        dial_status=r.text("DialStatus"),
        forward=r.opt("Forward"),
    )


def _originate_response(r: _Reader) -> OriginateResponse:
    unique_id = r.opt("Uniqueid", _UNKNOWN)
    return OriginateResponse(
        action_id=r.msg.action_id,
        response=r.text("Response"),
        channel_name=r.text("Channel"),
        context=r.opt("Context"),
        exten=r.opt("Exten"),
        application=r.opt("Application"),
        app_data=r.opt("Data"),
        reason=r.integer("Reason"),
        unique_id=None if unique_id in (_UNKNOWN, "") else unique_id,
        caller_id_num=_known(r.opt("CallerIDNum")),
        caller_id_name=_known(r.opt("CallerIDName")),
    )


def _bridge_create(r: _Reader) -> BridgeCreate:
    return BridgeCreate(bridge=r.bridge())


def _bridge_destroy(r: _Reader) -> BridgeDestroy:
    return BridgeDestroy(bridge=r.bridge())


def _bridge_enter(r: _Reader) -> BridgeEnter:
    return BridgeEnter(bridge=r.bridge(), channel=r.channel())


def _bridge_leave(r: _Reader) -> BridgeLeave:
    return BridgeLeave(bridge=r.bridge(), channel=r.channel())


def _dtmf_begin(r: _Reader) -> DTMFBegin:
    return DTMFBegin(channel=r.channel(), digit=r.text("Digit"), direction=r.text("Direction"))


def _dtmf_end(r: _Reader) -> DTMFEnd:
    return DTMFEnd(
        channel=r.channel(),
        digit=r.text("Digit"),
        direction=r.text("Direction"),
        duration_ms=r.integer("DurationMs"),
    )


def _mixmonitor_start(r: _Reader) -> MixMonitorStart:
    return MixMonitorStart(channel=r.channel())


def _mixmonitor_stop(r: _Reader) -> MixMonitorStop:
    return MixMonitorStop(channel=r.channel())


def _mixmonitor_mute(r: _Reader) -> MixMonitorMute:
    return MixMonitorMute(channel=r.channel(), direction=r.text("Direction"), state=r.flag("State"))


def _chanspy_start(r: _Reader) -> ChanSpyStart:
    return ChanSpyStart(spyer=r.channel("Spyer"), spyee=r.channel("Spyee"))


def _chanspy_stop(r: _Reader) -> ChanSpyStop:
    return ChanSpyStop(spyer=r.channel("Spyer"), spyee=r.opt_channel("Spyee"))


def _agi_exec_start(r: _Reader) -> AGIExecStart:
    return AGIExecStart(
        channel=r.channel(), command=r.text("Command"), command_id=r.text("CommandId")
    )


def _agi_exec_end(r: _Reader) -> AGIExecEnd:
    return AGIExecEnd(
        channel=r.channel(),
        command=r.text("Command"),
        command_id=r.text("CommandId"),
        result_code=r.integer("ResultCode"),
        result=r.opt("Result"),
    )


_USER_EVENT_OWN = frozenset({"event", "privilege", "userevent", "actionid"})


def _user_event(r: _Reader) -> UserEvent:
    channel = r.opt_channel()
    skip = _USER_EVENT_OWN | _CHANNEL_BLOCK_LOWER if channel is not None else _USER_EVENT_OWN
    fields = tuple((k, v) for k, v in r.msg.headers if k.lower() not in skip)
    return UserEvent(
        channel=channel, name=r.text("UserEvent"), fields=fields, action_id=r.msg.action_id
    )


def _core_show_channel(r: _Reader) -> CoreShowChannel:
    return CoreShowChannel(
        action_id=r.msg.action_id,
        channel=r.channel(),
        application=r.opt("Application"),
        application_data=r.opt("ApplicationData"),
        duration=r.opt("Duration"),
        bridge_id=r.opt("BridgeId"),
    )


def _core_show_channels_complete(r: _Reader) -> CoreShowChannelsComplete:
    return CoreShowChannelsComplete(action_id=r.msg.action_id, list_items=r.integer("ListItems"))


def _status(r: _Reader) -> Status:
    return Status(
        action_id=r.msg.action_id,
        channel=r.channel(),
        type=r.opt("Type"),
        dnid=r.opt("DNID"),
        application=r.opt("Application"),
        app_data=r.opt("Data"),
        bridge_id=r.opt("BridgeID"),
        seconds=r.opt_integer("Seconds"),
    )


def _status_complete(r: _Reader) -> StatusComplete:
    return StatusComplete(action_id=r.msg.action_id, list_items=r.integer("ListItems"))


def _channel_hungup(r: _Reader) -> ChannelHungup:
    return ChannelHungup(action_id=r.msg.action_id, channel_name=r.text("Channel"))


def _queue_caller_join(r: _Reader) -> QueueCallerJoin:
    return QueueCallerJoin(
        channel=r.channel(),
        queue=r.text("Queue"),
        position=r.integer("Position"),
        count=r.integer("Count"),
    )


def _queue_caller_leave(r: _Reader) -> QueueCallerLeave:
    return QueueCallerLeave(
        channel=r.channel(),
        queue=r.text("Queue"),
        position=r.integer("Position"),
        count=r.integer("Count"),
    )


def _queue_caller_abandon(r: _Reader) -> QueueCallerAbandon:
    return QueueCallerAbandon(
        channel=r.channel(),
        queue=r.text("Queue"),
        position=r.integer("Position"),
        original_position=r.integer("OriginalPosition"),
        hold_time=r.integer("HoldTime"),
    )


def _agent_called(r: _Reader) -> AgentCalled:
    return AgentCalled(
        channel=r.channel(),
        dest=r.channel("Dest"),
        queue=r.text("Queue"),
        interface=r.text("Interface"),
        member_name=r.opt("MemberName"),
    )


def _agent_ring_no_answer(r: _Reader) -> AgentRingNoAnswer:
    return AgentRingNoAnswer(
        channel=r.channel(),
        dest=r.channel("Dest"),
        queue=r.text("Queue"),
        interface=r.text("Interface"),
        member_name=r.opt("MemberName"),
        ring_time_ms=r.integer("RingTime"),
    )


def _agent_connect(r: _Reader) -> AgentConnect:
    return AgentConnect(
        channel=r.channel(),
        dest=r.channel("Dest"),
        queue=r.text("Queue"),
        interface=r.text("Interface"),
        member_name=r.opt("MemberName"),
        hold_time=r.integer("HoldTime"),
        ring_time=r.integer("RingTime"),
    )


def _agent_complete(r: _Reader) -> AgentComplete:
    return AgentComplete(
        channel=r.channel(),
        dest=r.channel("Dest"),
        queue=r.text("Queue"),
        interface=r.text("Interface"),
        member_name=r.opt("MemberName"),
        hold_time=r.integer("HoldTime"),
        talk_time=r.integer("TalkTime"),
        reason=r.text("Reason"),
    )


def _queue_member_added(r: _Reader) -> QueueMemberAdded:
    return QueueMemberAdded(member=r.queue_member())


def _queue_member_removed(r: _Reader) -> QueueMemberRemoved:
    return QueueMemberRemoved(member=r.queue_member())


def _queue_member_pause(r: _Reader) -> QueueMemberPause:
    return QueueMemberPause(member=r.queue_member())


def _queue_member_status(r: _Reader) -> QueueMemberStatus:
    return QueueMemberStatus(member=r.queue_member())


#: Event name (exactly as Asterisk spells it) -> decoder. Names not listed decode to UnknownEvent.
EVENT_DECODERS: dict[str, Callable[[_Reader], PbxEvent]] = {
    "FullyBooted": _fully_booted,
    "Shutdown": _shutdown,
    "Newchannel": _newchannel,
    "Newstate": _newstate,
    "NewCallerid": _new_callerid,
    "NewConnectedLine": _new_connected_line,
    "Newexten": _newexten,
    "VarSet": _varset,
    "Hangup": _hangup,
    "HangupRequest": _hangup_request,
    "SoftHangupRequest": _soft_hangup_request,
    "LocalBridge": _local_bridge,
    "DeviceStateChange": _device_state_change,
    "MusicOnHoldStart": _moh_start,
    "MusicOnHoldStop": _moh_stop,
    "DialBegin": _dial_begin,
    "DialState": _dial_state,
    "DialEnd": _dial_end,
    "OriginateResponse": _originate_response,
    "BridgeCreate": _bridge_create,
    "BridgeDestroy": _bridge_destroy,
    "BridgeEnter": _bridge_enter,
    "BridgeLeave": _bridge_leave,
    "DTMFBegin": _dtmf_begin,
    "DTMFEnd": _dtmf_end,
    "MixMonitorStart": _mixmonitor_start,
    "MixMonitorStop": _mixmonitor_stop,
    "MixMonitorMute": _mixmonitor_mute,
    "ChanSpyStart": _chanspy_start,
    "ChanSpyStop": _chanspy_stop,
    "AGIExecStart": _agi_exec_start,
    "AGIExecEnd": _agi_exec_end,
    "UserEvent": _user_event,
    "CoreShowChannel": _core_show_channel,
    "CoreShowChannelsComplete": _core_show_channels_complete,
    "Status": _status,
    "StatusComplete": _status_complete,
    "ChannelHungup": _channel_hungup,
    "QueueCallerJoin": _queue_caller_join,
    "QueueCallerLeave": _queue_caller_leave,
    "QueueCallerAbandon": _queue_caller_abandon,
    "AgentCalled": _agent_called,
    "AgentRingNoAnswer": _agent_ring_no_answer,
    "AgentConnect": _agent_connect,
    "AgentComplete": _agent_complete,
    "QueueMemberAdded": _queue_member_added,
    "QueueMemberRemoved": _queue_member_removed,
    "QueueMemberPause": _queue_member_pause,
    "QueueMemberStatus": _queue_member_status,
}


def decode_event(msg: AmiMessage) -> PbxEvent:
    """Decode one AMI event message into its typed PBX event (UnknownEvent if not in the table).

    Raises AmiProtocolError if `msg` is not an event (no ``Event`` header), and
    MalformedEventError (an AmiProtocolError) if a known event lacks a header it needs or a
    value does not parse.
    """
    exact = msg.exact_index()
    name = exact.get("Event")
    if name is None:
        name = msg.event
    if name is None:
        raise AmiProtocolError("decode_event() needs an AMI event, got a message without Event")
    decoder = EVENT_DECODERS.get(name)
    if decoder is None:
        fields = tuple((k, v) for k, v in msg.headers if k.lower() != "event")
        return UnknownEvent(name=name, fields=fields)
    return decoder(_Reader(msg, name, exact))
