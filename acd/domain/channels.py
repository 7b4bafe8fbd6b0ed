"""The live picture of one Asterisk's channels, kept up to date from its PBX events.

Theory of operation
-------------------

Follows the channel life cycle of the recorded Asterisk 22 traces
(tests/fixtures/asterisk-traces/README.md section 4.4; ``agent-dial``, ``ami-actions``):
``Newchannel`` creates a channel, every channel event carries the channel's whole current
snapshot (``ChannelSnapshot``), ``Hangup`` ends it. Channels are keyed by ``unique_id``, which
Asterisk never reuses; a call is the set of channels sharing a ``linked_id``.

* Every event that carries a snapshot replaces the stored one (last event wins), and adds the
  channel if it is unknown: after a reconnect, events may arrive before the
  ``CoreShowChannels`` list that :meth:`ChannelTable.reset` rebuilds the table from. Events
  carry no sequence number, so a replayed old event can briefly show an older state; the next
  event corrects it.
* ``Newchannel`` for a known channel is ignored (its snapshot is the oldest there is).
* ``Hangup`` removes the channel and leaves a tombstone (the last ``tombstones`` unique ids):
  later or replayed events about a hung-up channel are ignored, so a Hangup always removes,
  whatever order duplicates arrive in. A Hangup for an unknown channel only leaves a tombstone.
* ``BridgeEnter`` sets the channel's bridge; ``BridgeLeave`` clears it only if it is still that
  bridge (a late Leave of an earlier bridge does not undo a newer Enter).
* ``DialBegin``/``DialState``/``DialEnd`` record the peer (the other channel's unique id) and
  the dial status (``""`` while the dial is in progress, then ``RINGING``, ``ANSWER``,
  ``BUSY``, ...) on both channels; an originate's own dial has no calling channel.
* ``Newexten`` records the dialplan application the channel runs; ``VarSet`` on a channel
  records the variables named in ``tracked_variables`` (an empty value unsets one, as in
  Asterisk); global variables are ignored.
* :meth:`ChannelTable.reset` takes ``CoreShowChannel`` list items (or bare snapshots) and makes
  them the whole truth; it keeps the tombstones. Events that arrived while the list was being
  read can be applied again after the reset: applying an event twice is the same as once.

Everything here is pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace

from acd.domain.pbx_events import (
    BridgeEnter,
    BridgeLeave,
    ChannelSnapshot,
    CoreShowChannel,
    DialBegin,
    DialEnd,
    DialState,
    Hangup,
    HangupRequest,
    LocalBridge,
    NewCallerid,
    Newchannel,
    NewConnectedLine,
    Newexten,
    Newstate,
    PbxEvent,
    SoftHangupRequest,
    VarSet,
)

__all__ = ["TRACKED_VARIABLES", "ChannelTable", "LiveChannel"]

#: The channel variables kept by default: dial and bridge outcomes, and the AGI's exit status.
TRACKED_VARIABLES: frozenset[str] = frozenset(
    {"DIALSTATUS", "DIALEDPEERNAME", "BRIDGEPEER", "AGISTATUS", "QUEUESTATUS"}
)


@dataclass(frozen=True, slots=True)
class LiveChannel:
    """One live channel: its latest snapshot plus what the table derived from the events."""

    snapshot: ChannelSnapshot
    bridge_id: str | None = None
    dial_peer: str | None = None
    dial_status: str | None = None
    application: str = ""
    app_data: str = ""
    variables: tuple[tuple[str, str], ...] = ()

    @property
    def unique_id(self) -> str:
        return self.snapshot.unique_id

    @property
    def linked_id(self) -> str:
        return self.snapshot.linked_id

    @property
    def name(self) -> str:
        return self.snapshot.name

    def variable(self, name: str) -> str | None:
        """The value of a tracked channel variable, or None if it is not set."""
        for key, value in self.variables:
            if key == name:
                return value
        return None


class ChannelTable:
    """The live channels of one Asterisk, by unique id and by name."""

    def __init__(
        self, tracked_variables: Iterable[str] = TRACKED_VARIABLES, *, tombstones: int = 4096
    ) -> None:
        self._tracked = frozenset(tracked_variables)
        self._max_tombstones = tombstones
        self._channels: dict[str, LiveChannel] = {}
        self._names: dict[str, str] = {}
        self._dead: dict[str, None] = {}  # insertion-ordered set of hung-up unique ids

    # --- reading --------------------------------------------------------------------------

    def get(self, unique_id: str) -> LiveChannel | None:
        return self._channels.get(unique_id)

    def by_name(self, name: str) -> LiveChannel | None:
        unique_id = self._names.get(name)
        return None if unique_id is None else self._channels.get(unique_id)

    def calls(self) -> Mapping[str, tuple[LiveChannel, ...]]:
        """The live channels grouped by linked id (one group per call), oldest channel first."""
        groups: dict[str, list[LiveChannel]] = {}
        for channel in self._channels.values():
            groups.setdefault(channel.linked_id, []).append(channel)
        return {linked_id: tuple(channels) for linked_id, channels in groups.items()}

    def __len__(self) -> int:
        return len(self._channels)

    def __iter__(self) -> Iterator[LiveChannel]:
        return iter(tuple(self._channels.values()))

    def __contains__(self, unique_id: object) -> bool:
        return unique_id in self._channels

    # --- writing --------------------------------------------------------------------------

    def reset(self, snapshots: Iterable[ChannelSnapshot | CoreShowChannel]) -> None:
        """Replace the whole picture with a channel list (after a (re)connect)."""
        self._channels.clear()
        self._names.clear()
        for item in snapshots:
            if isinstance(item, CoreShowChannel):
                live = _from_list_item(item, LiveChannel(item.channel))
            else:
                live = LiveChannel(item)
            self._dead.pop(live.unique_id, None)
            self._put(live)

    def apply(self, event: PbxEvent) -> None:
        """Update the picture with one event; events that do not concern channels are ignored."""
        match event:
            case Newchannel(channel=snapshot):
                if snapshot.unique_id not in self._channels:
                    self._update(snapshot)
            case (
                Newstate(channel=snapshot)
                | NewCallerid(channel=snapshot)
                | NewConnectedLine(channel=snapshot)
                | HangupRequest(channel=snapshot)
                | SoftHangupRequest(channel=snapshot)
            ):
                self._update(snapshot)
            case Newexten(channel=snapshot, application=app, app_data=data):
                self._update(snapshot, lambda c: replace(c, application=app, app_data=data))
            case VarSet(channel=ChannelSnapshot() as snapshot, variable=name, value=value):
                self._set_variable(snapshot, name, value)
            case Hangup(channel=snapshot):
                self._remove(snapshot.unique_id)
            case BridgeEnter(bridge=bridge, channel=snapshot):
                self._update(snapshot, lambda c: replace(c, bridge_id=bridge.unique_id))
            case BridgeLeave(bridge=bridge, channel=snapshot):
                self._leave_bridge(snapshot, bridge.unique_id)
            case DialBegin(channel=caller, dest=dest):
                self._dial(caller, dest, "")
            case DialState(channel=caller, dest=dest, dial_status=status):
                self._dial(caller, dest, status)
            case DialEnd(channel=caller, dest=dest, dial_status=status):
                self._dial(caller, dest, status)
            case LocalBridge(local_one=one, local_two=two):
                self._update(one)
                self._update(two)
            case CoreShowChannel(channel=snapshot):
                self._update(snapshot, lambda c: _from_list_item(event, c))
            case _:
                pass

    # --- internals ------------------------------------------------------------------------

    def _put(self, live: LiveChannel) -> None:
        old = self._channels.get(live.unique_id)
        if old is not None and old.name != live.name and self._names.get(old.name) == old.unique_id:
            del self._names[old.name]
        self._channels[live.unique_id] = live
        self._names[live.name] = live.unique_id

    def _update(
        self, snapshot: ChannelSnapshot, change: Callable[[LiveChannel], LiveChannel] | None = None
    ) -> LiveChannel | None:
        """Store the newer snapshot (adding the channel if unknown), then apply `change`.

        Returns the stored channel, or None if the channel was hung up (nothing is stored)."""
        if snapshot.unique_id in self._dead:
            return None
        old = self._channels.get(snapshot.unique_id)
        live = LiveChannel(snapshot) if old is None else replace(old, snapshot=snapshot)
        if change is not None:
            live = change(live)
        self._put(live)
        return live

    def _set_variable(self, snapshot: ChannelSnapshot, name: str, value: str) -> None:
        live = self._update(snapshot)
        if live is None or name not in self._tracked:
            return
        others = tuple(kv for kv in live.variables if kv[0] != name)
        variables = (*others, (name, value)) if value else others
        self._put(replace(live, variables=variables))

    def _leave_bridge(self, snapshot: ChannelSnapshot, bridge_id: str) -> None:
        live = self._update(snapshot)
        if live is not None and live.bridge_id == bridge_id:
            self._put(replace(live, bridge_id=None))

    def _dial(self, caller: ChannelSnapshot | None, dest: ChannelSnapshot, status: str) -> None:
        caller_id = None if caller is None else caller.unique_id
        if caller is not None:
            self._update(caller, lambda c: replace(c, dial_peer=dest.unique_id, dial_status=status))
        self._update(dest, lambda c: replace(c, dial_peer=caller_id, dial_status=status))

    def _remove(self, unique_id: str) -> None:
        live = self._channels.pop(unique_id, None)
        if live is not None and self._names.get(live.name) == unique_id:
            del self._names[live.name]
        self._dead[unique_id] = None
        while len(self._dead) > self._max_tombstones:
            del self._dead[next(iter(self._dead))]


def _from_list_item(item: CoreShowChannel, live: LiveChannel) -> LiveChannel:
    return replace(
        live,
        snapshot=item.channel,
        bridge_id=item.bridge_id or None,
        application=item.application,
        app_data=item.application_data,
    )
