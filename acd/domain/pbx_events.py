"""Typed PBX events: what the telephony server reports about channels, bridges, dials and queues.

Pure data, no I/O. Class names are the PBX event names (they are the vocabulary of the
Asterisk Manager Interface, see tests/fixtures/asterisk-traces/README.md section 4.4), but the
fields use our snake_case names; the wire spellings are translated in
``acd.protocol.ami_events``. Absent caller-id values (Asterisk's ``<unknown>``) are ``""``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

Fields: TypeAlias = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class ChannelSnapshot:
    """The state of one channel as carried by every channel-related event."""

    name: str
    unique_id: str
    linked_id: str
    state: int
    state_desc: str
    caller_id_num: str
    caller_id_name: str
    connected_line_num: str
    connected_line_name: str
    language: str
    account_code: str
    context: str
    exten: str
    priority: int


@dataclass(frozen=True, slots=True)
class BridgeInfo:
    """The state of one bridge as carried by the Bridge* events."""

    unique_id: str
    type: str
    technology: str
    creator: str
    name: str
    num_channels: int
    video_source_mode: str


@dataclass(frozen=True, slots=True)
class QueueMemberInfo:
    """A queue member's state as carried by the QueueMember* events."""

    queue: str
    member_name: str
    interface: str
    state_interface: str
    membership: str
    penalty: int
    calls_taken: int
    last_call: int
    last_pause: int
    login_time: int
    in_call: bool
    status: int
    paused: bool
    paused_reason: str
    ring_in_use: bool
    wrapup_time: int


# --- system -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FullyBooted:
    """The PBX finished booting (also sent right after a login with events on)."""

    status: str
    uptime: int | None
    last_reload: int | None


@dataclass(frozen=True, slots=True)
class Shutdown:
    """The PBX is shutting down; the connection closes shortly after."""

    shutdown: str
    restart: bool


# --- channels -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Newchannel:
    """A channel was created."""

    channel: ChannelSnapshot


@dataclass(frozen=True, slots=True)
class Newstate:
    """A channel changed state (Ring, Ringing, Up, Busy, ...)."""

    channel: ChannelSnapshot


@dataclass(frozen=True, slots=True)
class NewCallerid:
    """A channel's caller id changed."""

    channel: ChannelSnapshot
    cid_calling_pres: str


@dataclass(frozen=True, slots=True)
class NewConnectedLine:
    """A channel's connected line changed."""

    channel: ChannelSnapshot


@dataclass(frozen=True, slots=True)
class Newexten:
    """A channel runs a new dialplan priority."""

    channel: ChannelSnapshot
    extension: str
    application: str
    app_data: str


@dataclass(frozen=True, slots=True)
class VarSet:
    """A variable was set; `channel` is None for a global variable."""

    channel: ChannelSnapshot | None
    variable: str
    value: str


@dataclass(frozen=True, slots=True)
class Hangup:
    """A channel was hung up."""

    channel: ChannelSnapshot
    cause: int
    cause_txt: str


@dataclass(frozen=True, slots=True)
class HangupRequest:
    """A hangup was requested on a channel."""

    channel: ChannelSnapshot
    cause: int | None


@dataclass(frozen=True, slots=True)
class SoftHangupRequest:
    """A soft hangup was requested on a channel."""

    channel: ChannelSnapshot
    cause: int | None


@dataclass(frozen=True, slots=True)
class LocalBridge:
    """The two halves of a Local channel were linked."""

    local_one: ChannelSnapshot
    local_two: ChannelSnapshot
    context: str
    exten: str
    local_optimization: bool


@dataclass(frozen=True, slots=True)
class DeviceStateChange:
    """A device changed state (NOT_INUSE, INUSE, RINGING, ...)."""

    device: str
    state: str


@dataclass(frozen=True, slots=True)
class MusicOnHoldStart:
    """A channel started hearing music on hold."""

    channel: ChannelSnapshot
    music_class: str


@dataclass(frozen=True, slots=True)
class MusicOnHoldStop:
    """A channel stopped hearing music on hold."""

    channel: ChannelSnapshot


# --- dialing ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DialBegin:
    """A dial started; `channel` (the caller) is None for an originate's own dial."""

    channel: ChannelSnapshot | None
    dest: ChannelSnapshot
    dial_string: str


@dataclass(frozen=True, slots=True)
class DialState:
    """A dialled channel changed state (e.g. RINGING)."""

    channel: ChannelSnapshot | None
    dest: ChannelSnapshot
    dial_status: str


@dataclass(frozen=True, slots=True)
class DialEnd:
    """A dial ended (ANSWER, NOANSWER, BUSY, CANCEL, ...)."""

    channel: ChannelSnapshot | None
    dest: ChannelSnapshot
    dial_status: str
    forward: str


@dataclass(frozen=True, slots=True)
class OriginateResponse:
    """The outcome of an asynchronous originate; `unique_id` is None when it failed."""

    action_id: str | None
    response: str
    channel_name: str
    context: str
    exten: str
    application: str
    app_data: str
    reason: int
    unique_id: str | None
    caller_id_num: str
    caller_id_name: str


# --- bridges ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BridgeCreate:
    """A bridge was created."""

    bridge: BridgeInfo


@dataclass(frozen=True, slots=True)
class BridgeDestroy:
    """A bridge was destroyed."""

    bridge: BridgeInfo


@dataclass(frozen=True, slots=True)
class BridgeEnter:
    """A channel entered a bridge."""

    bridge: BridgeInfo
    channel: ChannelSnapshot


@dataclass(frozen=True, slots=True)
class BridgeLeave:
    """A channel left a bridge."""

    bridge: BridgeInfo
    channel: ChannelSnapshot


# --- DTMF, recording, spying --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DTMFBegin:
    """A DTMF digit started on a channel."""

    channel: ChannelSnapshot
    digit: str
    direction: str


@dataclass(frozen=True, slots=True)
class DTMFEnd:
    """A DTMF digit ended on a channel."""

    channel: ChannelSnapshot
    digit: str
    direction: str
    duration_ms: int


@dataclass(frozen=True, slots=True)
class MixMonitorStart:
    """Recording started on a channel."""

    channel: ChannelSnapshot


@dataclass(frozen=True, slots=True)
class MixMonitorStop:
    """Recording stopped on a channel (the file is complete)."""

    channel: ChannelSnapshot


@dataclass(frozen=True, slots=True)
class MixMonitorMute:
    """Recording was muted (`state` True) or unmuted in one or both directions."""

    channel: ChannelSnapshot
    direction: str
    state: bool


@dataclass(frozen=True, slots=True)
class ChanSpyStart:
    """A supervisor channel started listening to another channel."""

    spyer: ChannelSnapshot
    spyee: ChannelSnapshot


@dataclass(frozen=True, slots=True)
class ChanSpyStop:
    """A supervisor channel stopped listening (`spyee` may already be gone)."""

    spyer: ChannelSnapshot
    spyee: ChannelSnapshot | None


# --- AGI ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AGIExecStart:
    """An AGI command started on a channel."""

    channel: ChannelSnapshot
    command: str
    command_id: str


@dataclass(frozen=True, slots=True)
class AGIExecEnd:
    """An AGI command finished on a channel."""

    channel: ChannelSnapshot
    command: str
    command_id: str
    result_code: int
    result: str


# --- user events and list items -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserEvent:
    """A user-defined event; `fields` are its own headers (channel block excluded)."""

    channel: ChannelSnapshot | None
    name: str
    fields: Fields
    action_id: str | None


@dataclass(frozen=True, slots=True)
class CoreShowChannel:
    """One channel of a CoreShowChannels list."""

    action_id: str | None
    channel: ChannelSnapshot
    application: str
    application_data: str
    duration: str
    bridge_id: str


@dataclass(frozen=True, slots=True)
class CoreShowChannelsComplete:
    """The end of a CoreShowChannels list."""

    action_id: str | None
    list_items: int


@dataclass(frozen=True, slots=True)
class Status:
    """One channel of a Status list."""

    action_id: str | None
    channel: ChannelSnapshot
    type: str
    dnid: str
    application: str
    app_data: str
    bridge_id: str
    seconds: int | None


@dataclass(frozen=True, slots=True)
class StatusComplete:
    """The end of a Status list."""

    action_id: str | None
    list_items: int


@dataclass(frozen=True, slots=True)
class ChannelHungup:
    """One channel hung up by a Hangup action with a regular expression."""

    action_id: str | None
    channel_name: str


# --- queues -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueCallerJoin:
    """A caller joined a queue at `position` (1-based); `count` callers are now waiting."""

    channel: ChannelSnapshot
    queue: str
    position: int
    count: int


@dataclass(frozen=True, slots=True)
class QueueCallerLeave:
    """A caller left a queue (answered or gone)."""

    channel: ChannelSnapshot
    queue: str
    position: int
    count: int


@dataclass(frozen=True, slots=True)
class QueueCallerAbandon:
    """A caller hung up while waiting in a queue."""

    channel: ChannelSnapshot
    queue: str
    position: int
    original_position: int
    hold_time: int


@dataclass(frozen=True, slots=True)
class AgentCalled:
    """A queue member is being rung for a caller."""

    channel: ChannelSnapshot
    dest: ChannelSnapshot
    queue: str
    interface: str
    member_name: str


@dataclass(frozen=True, slots=True)
class AgentRingNoAnswer:
    """A queue member did not answer within the ring time (`ring_time_ms`)."""

    channel: ChannelSnapshot
    dest: ChannelSnapshot
    queue: str
    interface: str
    member_name: str
    ring_time_ms: int


@dataclass(frozen=True, slots=True)
class AgentConnect:
    """A queue member answered and was connected to the caller."""

    channel: ChannelSnapshot
    dest: ChannelSnapshot
    queue: str
    interface: str
    member_name: str
    hold_time: int
    ring_time: int


@dataclass(frozen=True, slots=True)
class AgentComplete:
    """A queue call ended; `reason` is agent, caller or transfer."""

    channel: ChannelSnapshot
    dest: ChannelSnapshot
    queue: str
    interface: str
    member_name: str
    hold_time: int
    talk_time: int
    reason: str


@dataclass(frozen=True, slots=True)
class QueueMemberAdded:
    """A member was added to a queue."""

    member: QueueMemberInfo


@dataclass(frozen=True, slots=True)
class QueueMemberRemoved:
    """A member was removed from a queue."""

    member: QueueMemberInfo


@dataclass(frozen=True, slots=True)
class QueueMemberPause:
    """A queue member was paused or unpaused (see `member.paused`, `member.paused_reason`)."""

    member: QueueMemberInfo


@dataclass(frozen=True, slots=True)
class QueueMemberStatus:
    """A queue member's device status changed (`member.status`: 1 not in use, 2 in use)."""

    member: QueueMemberInfo


# --- everything else ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """Any event without a typed class; `fields` are all its headers except the event name."""

    name: str
    fields: Fields


PbxEvent: TypeAlias = (
    FullyBooted
    | Shutdown
    | Newchannel
    | Newstate
    | NewCallerid
    | NewConnectedLine
    | Newexten
    | VarSet
    | Hangup
    | HangupRequest
    | SoftHangupRequest
    | LocalBridge
    | DeviceStateChange
    | MusicOnHoldStart
    | MusicOnHoldStop
    | DialBegin
    | DialState
    | DialEnd
    | OriginateResponse
    | BridgeCreate
    | BridgeDestroy
    | BridgeEnter
    | BridgeLeave
    | DTMFBegin
    | DTMFEnd
    | MixMonitorStart
    | MixMonitorStop
    | MixMonitorMute
    | ChanSpyStart
    | ChanSpyStop
    | AGIExecStart
    | AGIExecEnd
    | UserEvent
    | CoreShowChannel
    | CoreShowChannelsComplete
    | Status
    | StatusComplete
    | ChannelHungup
    | QueueCallerJoin
    | QueueCallerLeave
    | QueueCallerAbandon
    | AgentCalled
    | AgentRingNoAnswer
    | AgentConnect
    | AgentComplete
    | QueueMemberAdded
    | QueueMemberRemoved
    | QueueMemberPause
    | QueueMemberStatus
    | UnknownEvent
)
