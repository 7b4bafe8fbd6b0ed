"""Simulated Asterisk channels: state, caller ids, variables, Local pairs and id allocation.

Follows section 4.4 of the trace README: Local channel names
``Local/<exten>@<context>-<8 hex>;1`` / ``;2`` with one global counter per pair,
``Uniqueid`` ``<epoch>.<seq>`` with one global sequence (``;1`` gets N, ``;2`` N+1, and the
sequence advances even when the originate supplies ``ChannelId``/``OtherChannelId``), and the
``Linkedid`` of the first channel of a call inherited by every channel created from it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import IntEnum

from asterisk_sim.clock import SimClock

__all__ = [
    "STATE_DESC",
    "Channel",
    "ChannelRegistry",
    "ChannelState",
    "LocalPair",
]


class ChannelState(IntEnum):
    """ast_channel_state values, as AMI prints them in ``ChannelState``."""

    DOWN = 0
    RSRVD = 1
    OFFHOOK = 2
    DIALING = 3
    RING = 4
    RINGING = 5
    UP = 6
    BUSY = 7


STATE_DESC: dict[ChannelState, str] = {
    ChannelState.DOWN: "Down",
    ChannelState.RSRVD: "Rsrvd",
    ChannelState.OFFHOOK: "OffHook",
    ChannelState.DIALING: "Dialing",
    ChannelState.RING: "Ring",
    ChannelState.RINGING: "Ringing",
    ChannelState.UP: "Up",
    ChannelState.BUSY: "Busy",
}

UNKNOWN = "<unknown>"


@dataclass(eq=False)
class Channel:
    """One live channel. Mutable: the PBX changes its state, location and variables."""

    name: str
    uniqueid: str
    linkedid: str
    context: str
    exten: str
    priority: int = 1
    state: ChannelState = ChannelState.DOWN
    caller_num: str = UNKNOWN
    caller_name: str = UNKNOWN
    connected_num: str = UNKNOWN
    connected_name: str = UNKNOWN
    language: str = "en"
    accountcode: str = ""
    dnid: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    application: str = ""
    app_data: str = ""
    peer: Channel | None = None  # the other half of a Local pair
    bridge_id: str = ""
    bridged_with: Channel | None = None
    created_at: float = 0.0
    hangup_cause: int | None = None
    soft_hangup: bool = False
    soft16_emitted: bool = False
    gone: bool = False
    peer_notified: bool = False
    reading: int = 0  # > 0 while a command or application reads DTMF
    dtmf: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    control: asyncio.Queue[str] = field(default_factory=asyncio.Queue)  # ANSWER/RINGING/BUSY/HANGUP
    hangup_event: asyncio.Event = field(default_factory=asyncio.Event)
    redirect_event: asyncio.Event = field(default_factory=asyncio.Event)
    redirect_to: tuple[str, str, int] | None = None
    moh_class: str | None = None
    mixmonitor: object | None = None
    caller_audio: object | None = None  # CallerAudio for AudioSocket, set by scripts

    @property
    def state_desc(self) -> str:
        """``ChannelStateDesc`` text."""
        return STATE_DESC[self.state]

    @property
    def is_hungup(self) -> bool:
        """True once a hangup was requested (soft or hard) or the channel is gone."""
        return self.soft_hangup or self.gone

    @property
    def tech(self) -> str:
        """Channel technology, the part of the name before the first ``/``."""
        return self.name.split("/", 1)[0]

    def deliver_dtmf(self, digit: str) -> bool:
        """Queue a received digit if something is reading; otherwise it is lost (res_agi)."""
        if self.reading > 0 and not self.is_hungup:
            self.dtmf.put_nowait(digit)
            return True
        return False

    def drain_dtmf(self) -> None:
        """Drop digits queued while nothing consumed them."""
        while not self.dtmf.empty():
            self.dtmf.get_nowait()


@dataclass(frozen=True, slots=True)
class LocalPair:
    """The two halves of a Local channel."""

    one: Channel
    two: Channel


class ChannelRegistry:
    """All live channels plus the global counters for Uniqueids and Local channel names."""

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock
        self._seq = 0
        self._local = 0
        self._by_name: dict[str, Channel] = {}
        self.processed_calls = 0

    def next_uniqueid(self) -> str:
        """``<epoch>.<seq>`` with the global sequence."""
        uid = f"{self._clock.epoch()}.{self._seq}"
        self._seq += 1
        return uid

    def new_local_pair(
        self,
        exten: str,
        context: str,
        *,
        linkedid: str | None = None,
        ids: tuple[str | None, str | None] = (None, None),
    ) -> LocalPair:
        """Create ``Local/<exten>@<context>-<n>;1`` (Down) and ``;2`` (Ring)."""
        base = f"Local/{exten}@{context}-{self._local:08x}"
        self._local += 1
        uid1 = self.next_uniqueid()
        uid2 = self.next_uniqueid()
        uid1 = ids[0] or uid1
        uid2 = ids[1] or uid2
        link = linkedid or uid1
        now = self._clock.now()
        one = Channel(name=f"{base};1", uniqueid=uid1, linkedid=link, context=context, exten=exten)
        two = Channel(
            name=f"{base};2",
            uniqueid=uid2,
            linkedid=link,
            context=context,
            exten=exten,
            state=ChannelState.RING,
        )
        one.created_at = two.created_at = now
        one.peer, two.peer = two, one
        self._by_name[one.name] = one
        self._by_name[two.name] = two
        self.processed_calls += 1
        return LocalPair(one, two)

    def get(self, name: str) -> Channel | None:
        """The live channel called `name` (exact match), if any."""
        return self._by_name.get(name)

    def remove(self, channel: Channel) -> None:
        """Forget a channel that has hung up."""
        if self._by_name.get(channel.name) is channel:
            del self._by_name[channel.name]

    def all(self) -> list[Channel]:
        """Live channels, in creation order."""
        return list(self._by_name.values())
