"""The ACD's one connection to Asterisk's Manager Interface: login, actions, events, reconnects.

Theory of operation
-------------------

Follows the AMI facts recorded from Asterisk 22.10.1 in
``tests/fixtures/asterisk-traces/README.md`` section 4.1 (traces ``ami-login``, ``ami-actions``,
``ami-errors``, ``ami-login-bad``, ``ami-reconnect``, ``ami-shutdown``).

**Life cycle.** :meth:`AmiLink.run` loops *connect -> banner -> Login -> resync -> serve ->
back off -> retry* until it is cancelled. Every wait has a timeout: ``connect_timeout`` for the
TCP connect and the banner, ``action_timeout`` for each action (Login and Ping included). The
back-off is exponential with *full jitter*: before attempt ``n`` (0-based, counting attempts
since the last stable session) the link sleeps ``uniform(0, min(backoff_max, backoff_initial *
2**n))``. A session that stayed logged in for at least ``backoff_max`` seconds resets ``n`` to
0, so one lost connection is retried quickly, while a refusing, rejecting or flapping server
(Asterisk restarting, ``Authentication failed``, a drop right after login) is retried ever more
slowly. The secret is only ever written to the socket: it is not logged, not put in an
exception, not kept in any repr.

**Reading.** :class:`~acd.adapters.ami_protocol.AmiStreamProtocol` feeds socket bytes to the
sans-I/O :class:`~acd.protocol.ami.AmiDecoder` and hands each message to this module's session,
synchronously: the read path matches an ActionID, decodes an event with
:func:`~acd.protocol.ami_events.decode_event` and enqueues; it never awaits and starts no task.

**Actions.** Each action gets a fresh ActionID and a pending slot keyed by it. Responses are
matched by ActionID only, never by order (in ``ami-actions`` a ``Newexten`` arrives between an
Originate and its Response). Each action has its own timeout; on timeout its slot is freed and
:class:`AmiActionTimeout` raised, so a hung action (panoramisk users see ``QueueAdd`` hang
forever) blocks nothing else. A late reply to a freed slot is counted and dropped. ``Response:
Error`` raises :class:`AmiActionError` with Asterisk's ``Message``. When the connection ends every
pending action fails with :class:`AmiConnectionLost`: actions are **never replayed** on the next
connection (a replayed Originate is a duplicate call); the caller decides.

* :meth:`AmiLink.send_list_action` collects every event carrying its ActionID up to the one
  with ``EventList: Complete`` (``CoreShowChannelsComplete``, ``StatusComplete``,
  ``QueueStatusComplete``, ...). A plain ``Response: Error`` (``Status`` of an unknown channel)
  raises :class:`AmiActionError`; a plain ``Success`` without ``EventList: start`` (``Hangup`` by
  name) returns ``[]``. List items are not put on the event queue.
* :meth:`AmiLink.originate` always sends ``Async: true``. Its result is the typed
  :class:`~acd.domain.pbx_events.OriginateResponse` event (``Response: Success`` or
  ``Failure`` with ``unique_id=None`` for ``Uniqueid: <unknown>``); the same event is **also**
  put on the event queue (panoramisk folds it into the reply, so handlers never see it).

**Events.** Every event that is not a list item goes, typed, onto :attr:`AmiLink.events`, a
bounded ``asyncio.Queue`` shared with the link's own items: :class:`LinkStateChanged` (after
login; when a session ends, with ``retry_in`` the delay before the next attempt; ``link
stopped`` when ``run()`` is cancelled) and :class:`Resynced`.
An unknown event is an ``UnknownEvent``; a malformed known event is counted, logged once per
event name, and skipped.

**Resync.** After every login the link sends ``CoreShowChannels`` and puts one
:class:`Resynced` item holding the live channels, so consumers rebuild their picture after a
reconnect (``ChannelTable.reset(resynced.channels)``). Ordering: events read before the list's
``Response`` precede ``Resynced`` in the queue; events read while the list streams are held and
queued right after it, so applying the queue in order after ``reset`` is consistent.

**Full queue: drop the oldest, never block the reader.** Blocking the reader would stall
Ping replies and action responses behind a slow consumer, and Asterisk itself drops a client
that does not read within ``writetimeout`` (manager.conf: 100 ms by default, 5000 ms in the
recorded lab's ``asterisk-etc/manager.conf``). So when the queue is full the oldest item (of any
kind, a link item included) is dropped and counted (:attr:`LinkStats.dropped_events`); a warning
is logged once at the start of a burst; when the queue has drained to half (checked on each put
and each heartbeat tick) the burst is over, its size is logged, and a resync is run so consumers
get a fresh :class:`Resynced` instead of a silently wrong picture. (The events held during a
resync are not bounded by the queue; the resync's ``action_timeout`` bounds them in time.)

**Heartbeat and shutdown.** Every ``heartbeat_interval`` the link sends ``Ping``; an unanswered
Ping (``action_timeout``), an EOF, a framing error or a ``Shutdown`` event (queued first, then
the socket is closed without waiting for Asterisk to close it) ends the session and the link
reconnects with back-off. :attr:`AmiLink.connected` is set while logged in;
:meth:`AmiLink.wait_fully_booted` waits for ``FullyBooted``, which comes with the login reply, or
later when Asterisk is still booting (``ami-reconnect``).

Why not ``panoramisk.Manager``
------------------------------

The design names panoramisk for the AMI connection, and ``Manager(protocol_factory=...)`` was
evaluated. It is unworkable because everything it does beyond ``loop.create_connection`` is one
of the parts STYLE.md says to replace, and none of it can be switched off:

1. ``Manager.connect()`` wraps ``create_connection`` in a Task whose done-callback
   ``connection_made`` schedules its *own* fixed-delay reconnect (``call_later(
   reconnect_timeout, self.connect)``) on ``OSError``: no jitter, no back-off, and it survives
   the cancellation of our ``run()``. There is no connect timeout; cancelling the Task to impose
   one makes ``f.result()`` raise ``CancelledError`` inside that callback.
2. ``connection_made`` sends ``Login`` itself through panoramisk's ``Action`` (no timeout; if the
   connection drops before the reply, ``authenticated_future`` stays pending forever) and starts
   a pinger that writes ``Ping`` without ever checking a reply, so a dead peer is never noticed.
3. ``connection_lost`` reconnects on its own timer again, and ``AMIProtocol.close`` moves
   unanswered actions to ``awaiting_actions``, which are re-sent after the next ``FullyBooted``:
   an Originate whose reply was lost is sent twice.
4. Correlation goes through ``Action.multi``/``completed`` heuristics: ``QueueAdd``'s reply is
   taken for a list that never ends, ``PlayDTMF``'s ``... successfully queued`` raises
   ``KeyError: 'async'``, and ``OriginateResponse`` is folded into the reply.

Overriding those leaves only ``connect()``, six lines around ``create_connection``. So the link
calls ``loop.create_connection`` with our protocol and codec directly. From panoramisk it keeps
the ActionID scheme (``panoramisk.utils.IdGenerator``: ``<prefix>/<uuid4>/<n>/<m>``, unique per
process, so a late reply from an old connection can never match a new action); panoramisk
stays a pinned dependency for that and for FastAGI elsewhere, and is the baseline of
``bench/ami_ingest.py``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from panoramisk.utils import IdGenerator

from acd.adapters.ami_protocol import AmiStreamProtocol
from acd.domain.pbx_events import (
    CoreShowChannel,
    FullyBooted,
    OriginateResponse,
    PbxEvent,
    Shutdown,
)
from acd.errors import AcdError
from acd.protocol.ami import AmiBanner, AmiMessage, AmiProtocolError, encode_action
from acd.protocol.ami_events import decode_event

__all__ = [
    "AmiActionError",
    "AmiActionTimeout",
    "AmiConnectionLost",
    "AmiLink",
    "AmiLinkError",
    "AmiLoginError",
    "AmiNotConnected",
    "LinkItem",
    "LinkStateChanged",
    "LinkStats",
    "Resynced",
]

_log = logging.getLogger(__name__)

_SUCCESS_RESPONSES = frozenset({"success", "goodbye", "follows"})
_DEFAULT_ORIGINATE_RING_MS = 30_000  # Asterisk's default Originate Timeout


# --- errors -------------------------------------------------------------------------------


class AmiLinkError(AcdError):
    """Base of the errors raised by the AMI link."""

    error_id = "ami-link-error"


class AmiActionError(AmiLinkError):
    """Asterisk answered an action with ``Response: Error``; `message` is its ``Message``."""

    error_id = "ami-action-error"

    def __init__(self, action: str, message: str, action_id: str) -> None:
        super().__init__(f"AMI action {action} failed: {message}")
        self.action = action
        self.message = message
        self.action_id = action_id


class AmiLoginError(AmiActionError):
    """Asterisk rejected the Login (e.g. ``Authentication failed``)."""

    error_id = "ami-login-failed"


class AmiActionTimeout(AmiLinkError):
    """An action got no (complete) answer within its timeout; its slot has been freed."""

    error_id = "ami-action-timeout"

    def __init__(self, action: str, action_id: str, timeout: float) -> None:
        super().__init__(f"AMI action {action} ({action_id}) not answered within {timeout:g} s")
        self.action = action
        self.action_id = action_id
        self.timeout = timeout


class AmiConnectionLost(AmiLinkError):
    """The AMI connection ended before the action was answered."""

    error_id = "ami-connection-lost"


class AmiNotConnected(AmiConnectionLost):
    """An action was sent while the link is not logged in."""

    error_id = "ami-not-connected"


# --- items the link puts on its queue -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkStateChanged:
    """The link logged in (`connected`) or lost its session; `retry_in` is the back-off delay."""

    connected: bool
    reason: str
    retry_in: float | None = None


@dataclass(frozen=True, slots=True)
class Resynced:
    """The live channels right after a (re)connect or an event overflow: rebuild from these."""

    channels: tuple[CoreShowChannel, ...]


LinkItem: TypeAlias = PbxEvent | LinkStateChanged | Resynced


@dataclass(slots=True)
class LinkStats:
    """Counters for monitoring and tests."""

    connect_attempts: int = 0
    sessions: int = 0
    login_failures: int = 0
    dropped_events: int = 0
    malformed_events: int = 0
    unmatched_responses: int = 0
    last_backoff: float | None = None


# --- one connection -----------------------------------------------------------------------


#: Events that change the link's own state (decode_event maps these names to these types).
_LIFECYCLE_EVENTS = frozenset({"FullyBooted", "Shutdown"})


class _Kind(enum.Enum):
    SINGLE = enum.auto()  # done at its Response
    LIST = enum.auto()  # done at the event with EventList: Complete
    ORIGINATE = enum.auto()  # done when both the Response and the OriginateResponse are in


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Done-callback that marks a future's exception as seen (its awaiter may be gone)."""
    if not future.cancelled():
        future.exception()


@dataclass(eq=False, slots=True)
class _Pending:
    name: str
    action_id: str
    kind: _Kind
    future: asyncio.Future[list[AmiMessage]]
    response: AmiMessage | None = None
    items: list[AmiMessage] = field(default_factory=list)
    result: list[AmiMessage] = field(default_factory=list)
    hold: list[LinkItem] | None = None  # resync only: events held while the list streams
    on_done: Callable[[list[AmiMessage]], LinkItem] | None = None  # builds the item queued first
    first: LinkItem | None = None


class _Session:
    """One TCP connection: pending actions by ActionID, event routing. Implements AmiSink."""

    def __init__(self, link: AmiLink) -> None:
        loop = asyncio.get_running_loop()
        self._link = link
        self._transport: asyncio.Transport | None = None
        self.banner: asyncio.Future[AmiBanner] = loop.create_future()
        self.banner.add_done_callback(_retrieve)
        self.pending: dict[str, _Pending] = {}
        self.closed_reason: str | None = None
        self.wakeup = asyncio.Event()
        self.resync_wanted = False
        self.logged_in = False
        self.logged_in_at = 0.0
        self._holding: _Pending | None = None

    # -- AmiSink ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def banner_received(self, banner: AmiBanner) -> None:
        if not self.banner.done():
            self.banner.set_result(banner)

    def message_received(self, message: AmiMessage) -> None:
        pending = None
        if self.pending:  # most messages are events while nothing is pending: skip the lookup
            action_id = message.action_id
            if action_id is not None:
                pending = self.pending.get(action_id)
        name = message.event
        if name is None:
            if pending is not None:
                self._on_response(pending, message)
            else:
                self._link.stats.unmatched_responses += 1
                _log.debug("AMI response without a pending action: %s", message.action_id)
            return
        if pending is not None:
            if pending.kind is _Kind.LIST:
                self._on_list_item(pending, message)
                return
            if pending.kind is _Kind.ORIGINATE and name == "OriginateResponse":
                pending.items.append(message)
                if pending.response is not None:
                    self._complete(pending, [pending.response, message])
        event = self._link._decode(message)
        if event is None:
            return
        if self._holding is None:
            self._link._put(event)
        else:
            self.emit(event)
        if name in _LIFECYCLE_EVENTS:  # one set lookup instead of an isinstance chain
            if type(event) is FullyBooted:
                self._link._booted.set()
            elif type(event) is Shutdown:
                self.close("Asterisk is shutting down (Shutdown event)", abort=False)

    def stream_failed(self, error: AmiProtocolError) -> None:
        self.close(f"AMI protocol error: {error}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(f"connection lost: {exc}" if exc else "connection closed by Asterisk")

    # -- routing ---------------------------------------------------------------------------

    def _on_response(self, pending: _Pending, message: AmiMessage) -> None:
        response = (message.response or "").lower()
        if response not in _SUCCESS_RESPONSES:
            error = AmiActionError(pending.name, message.get("Message") or "", pending.action_id)
            self._fail(pending, error)
        elif pending.kind is _Kind.SINGLE:
            self._complete(pending, [message])
        elif pending.kind is _Kind.LIST:
            if (message.get("EventList") or "").lower() == "start":
                pending.response = message
                if pending.hold is not None:
                    self._holding = pending
            else:
                self._complete(pending, [])  # a plain success: not a list
        else:
            pending.response = message
            if pending.items:
                self._complete(pending, [message, pending.items[-1]])

    def _on_list_item(self, pending: _Pending, message: AmiMessage) -> None:
        if (message.get("EventList") or "").lower() == "complete":
            self._complete(pending, pending.items)
        else:
            pending.items.append(message)

    def emit(self, item: LinkItem) -> None:
        """Queue an item, or hold it while a resync list is streaming."""
        holding = self._holding
        if holding is not None and holding.hold is not None:
            holding.hold.append(item)
        else:
            self._link._put(item)

    def _complete(self, pending: _Pending, result: list[AmiMessage]) -> None:
        self.pending.pop(pending.action_id, None)
        pending.result = result
        if pending.on_done is not None:
            pending.first = pending.on_done(result)
        self._release(pending, first=pending.first)
        if not pending.future.done():
            pending.future.set_result(result)

    def _fail(self, pending: _Pending, error: AmiLinkError) -> None:
        self.pending.pop(pending.action_id, None)
        self._release(pending)
        if not pending.future.done():
            pending.future.set_exception(error)

    def _release(self, pending: _Pending, first: LinkItem | None = None) -> None:
        """End a resync's hold: queue `first` (the Resynced item), then the held events."""
        if self._holding is pending:
            self._holding = None
        held, pending.hold = pending.hold, None
        if first is not None:
            self._link._put(first)
        for item in held or ():
            self._link._put(item)

    # -- used by the link ------------------------------------------------------------------

    def register(
        self,
        name: str,
        action_id: str,
        kind: _Kind,
        on_done: Callable[[list[AmiMessage]], LinkItem] | None,
        *,
        hold: bool,
    ) -> _Pending:
        future: asyncio.Future[list[AmiMessage]] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        pending = _Pending(
            name, action_id, kind, future, hold=[] if hold else None, on_done=on_done
        )
        self.pending[action_id] = pending
        return pending

    def forget(self, pending: _Pending) -> None:
        """Free the slot of an action that timed out or whose caller went away."""
        if self.pending.get(pending.action_id) is pending:
            del self.pending[pending.action_id]
        self._release(pending)

    def write(self, data: bytes) -> None:
        transport = self._transport
        if self.closed_reason is not None or transport is None or transport.is_closing():
            raise AmiConnectionLost(self.closed_reason or "AMI connection is closed")
        transport.write(data)

    def request_resync(self) -> None:
        self.resync_wanted = True
        self.wakeup.set()

    def close(self, reason: str, *, abort: bool = True) -> None:
        """End the session once: fail every pending action and close the socket."""
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        self.wakeup.set()
        if not self.banner.done():
            self.banner.set_exception(AmiConnectionLost(reason))
        for pending in list(self.pending.values()):
            self._fail(pending, AmiConnectionLost(reason))
        transport = self._transport
        if transport is not None and not transport.is_closing():
            if abort:
                transport.abort()
            else:
                transport.close()


@dataclass(frozen=True, slots=True)
class _Outcome:
    logged_in: bool
    reason: str
    stable: bool = False  # stayed logged in for at least backoff_max seconds


# --- the link -----------------------------------------------------------------------------


class AmiLink:
    """A self-healing AMI client: run() keeps one logged-in connection; see the module docstring."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        events_queue_size: int = 10000,
        action_timeout: float = 10.0,
        heartbeat_interval: float = 20.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        connect_timeout: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        if events_queue_size < 2:
            raise ValueError("events_queue_size must be at least 2")
        self._host = host
        self._port = port
        self._username = username
        self._secret = secret
        self._action_timeout = action_timeout
        self._heartbeat_interval = heartbeat_interval
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._connect_timeout = connect_timeout
        self._rng = rng or random.Random()
        self._ids = IdGenerator("acd")
        self.events: asyncio.Queue[LinkItem] = asyncio.Queue(maxsize=events_queue_size)
        self.connected = asyncio.Event()
        self.stats = LinkStats()
        self._booted = asyncio.Event()
        self._session: _Session | None = None
        self._burst_dropped = 0
        self._malformed_logged: set[str] = set()

    def __repr__(self) -> str:
        return f"<AmiLink {self._username}@{self._host}:{self._port}>"

    # -- public API ------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, log in, resync and serve; on any failure back off with jitter and retry."""
        attempt = 0
        streak = 0
        while True:
            outcome = await self._run_session()
            if outcome.stable:
                attempt = 0
            if outcome.logged_in:
                streak = 0
            delay = self._backoff(attempt)
            attempt += 1
            self.stats.last_backoff = delay
            if outcome.logged_in:
                self._put(LinkStateChanged(connected=False, reason=outcome.reason, retry_in=delay))
                _log.warning(
                    "AMI link %s:%d lost: %s; reconnecting in %.2f s",
                    self._host,
                    self._port,
                    outcome.reason,
                    delay,
                )
            else:
                streak += 1
                _log.log(
                    logging.WARNING if streak == 1 else logging.DEBUG,
                    "AMI link %s:%d as %r: %s; retry %d in %.2f s",
                    self._host,
                    self._port,
                    self._username,
                    outcome.reason,
                    streak,
                    delay,
                )
            await asyncio.sleep(delay)

    async def send_action(
        self, name: str, fields: Iterable[tuple[str, str]] = (), *, timeout: float | None = None
    ) -> AmiMessage:
        """Send one action and return its response (raises AmiActionError on Response: Error)."""
        pending = await self._call(self._live_session(), name, fields, _Kind.SINGLE, timeout)
        return pending.result[0]

    async def send_list_action(
        self, name: str, fields: Iterable[tuple[str, str]] = (), *, timeout: float | None = None
    ) -> list[AmiMessage]:
        """Send a list action; return its item events, collected up to EventList: Complete."""
        pending = await self._call(self._live_session(), name, fields, _Kind.LIST, timeout)
        return pending.result

    async def originate(
        self,
        channel: str,
        fields: Iterable[tuple[str, str]] = (),
        *,
        timeout: float | None = None,
    ) -> OriginateResponse:
        """Originate asynchronously and return its OriginateResponse (Success or Failure).

        `fields` are the other Originate headers (Context/Exten/Priority or Application/Data,
        CallerID, Variable, ChannelId, Timeout in ms, ...); ``Async: true`` is added. The wait
        defaults to the ring ``Timeout`` (Asterisk's default 30 s) plus ``action_timeout``.
        """
        extra = list(fields)
        ring_ms = _DEFAULT_ORIGINATE_RING_MS
        for key, value in extra:
            lowered = key.lower()
            if lowered in ("async", "channel", "action", "actionid"):
                raise ValueError(f"originate() sets {key} itself")
            if lowered == "timeout":
                ring_ms = int(value)
        if timeout is None:
            timeout = ring_ms / 1000 + self._action_timeout
        headers = [("Channel", channel), *extra, ("Async", "true")]
        pending = await self._call(
            self._live_session(), "Originate", headers, _Kind.ORIGINATE, timeout
        )
        event = decode_event(pending.result[-1])
        if not isinstance(event, OriginateResponse):  # pragma: no cover - routing guarantees it
            raise AmiProtocolError(f"expected OriginateResponse, got {type(event).__name__}")
        return event

    async def resync(self, *, timeout: float | None = None) -> list[CoreShowChannel]:
        """Fetch the live channels now and queue a Resynced item (also done on every login)."""
        return await self._resync(self._live_session(), timeout)

    async def wait_fully_booted(self, timeout: float | None = None) -> None:
        """Wait until Asterisk has reported FullyBooted on the current connection."""
        async with asyncio.timeout(timeout):
            await self._booted.wait()

    def make_protocol(self) -> AmiStreamProtocol:
        """A protocol bound to a fresh, unconnected session of this link (used by benchmarks)."""
        return AmiStreamProtocol(_Session(self))

    # -- sessions --------------------------------------------------------------------------

    async def _run_session(self) -> _Outcome:
        self.stats.connect_attempts += 1
        loop = asyncio.get_running_loop()
        session = _Session(self)
        try:
            async with asyncio.timeout(self._connect_timeout):
                await loop.create_connection(
                    lambda: AmiStreamProtocol(session), self._host, self._port
                )
        except TimeoutError:
            return _Outcome(False, f"no TCP connection within {self._connect_timeout:g} s")
        except OSError as err:
            return _Outcome(False, f"cannot connect: {err}")
        reason = "session ended"
        self._session = session
        self._booted.clear()
        try:
            try:
                async with asyncio.timeout(self._connect_timeout):
                    banner = await session.banner
            except TimeoutError:
                raise AmiConnectionLost(
                    f"no AMI banner within {self._connect_timeout:g} s"
                ) from None
            _log.debug("AMI banner from %s:%d: %s", self._host, self._port, banner.text)
            await self._login(session)
            _log.info("AMI link %s:%d logged in as %r", self._host, self._port, self._username)
            await self._resync(session)
            reason = await self._serve(session)
        except AmiLoginError as err:
            self.stats.login_failures += 1
            reason = f"login failed: {err.message}"
        except (AmiConnectionLost, AmiActionTimeout, AmiActionError, AmiProtocolError) as err:
            reason = session.closed_reason or str(err)
        except asyncio.CancelledError:
            reason = "link stopped"
            if session.logged_in:
                self._put(LinkStateChanged(connected=False, reason=reason))
            raise
        finally:
            if self._session is session:
                self._session = None
            session.close(reason)
            self.connected.clear()
        stable = session.logged_in and loop.time() - session.logged_in_at >= self._backoff_max
        return _Outcome(session.logged_in, reason, stable)

    async def _login(self, session: _Session) -> None:
        fields = (("Username", self._username), ("Secret", self._secret), ("Events", "on"))

        def logged_in(_: list[AmiMessage]) -> LinkItem:
            # Runs in the read path when the reply is matched, so this item is queued before
            # any event that follows the reply (FullyBooted comes in the same read).
            session.logged_in = True
            session.logged_in_at = asyncio.get_running_loop().time()
            self.stats.sessions += 1
            self.connected.set()
            return LinkStateChanged(connected=True, reason="logged in")

        try:
            await self._call(session, "Login", fields, _Kind.SINGLE, None, on_done=logged_in)
        except AmiActionError as err:
            raise AmiLoginError("Login", err.message, err.action_id) from None

    async def _serve(self, session: _Session) -> str:
        """Wait for trouble, pinging every heartbeat_interval; return why the session ended."""
        while True:
            if session.closed_reason is not None:
                return session.closed_reason
            if session.resync_wanted:
                session.resync_wanted = False
                await self._resync(session)
                continue
            session.wakeup.clear()
            try:
                async with asyncio.timeout(self._heartbeat_interval):
                    await session.wakeup.wait()
            except TimeoutError:
                self._check_burst_end()
                await self._call(session, "Ping", (), _Kind.SINGLE, None)

    async def _resync(
        self, session: _Session, timeout: float | None = None
    ) -> list[CoreShowChannel]:
        pending = await self._call(
            session,
            "CoreShowChannels",
            (),
            _Kind.LIST,
            timeout,
            on_done=self._resynced_from,
            hold=True,
        )
        resynced = pending.first
        assert isinstance(resynced, Resynced)
        _log.info("AMI resync: %d live channels", len(resynced.channels))
        return list(resynced.channels)

    async def _call(
        self,
        session: _Session,
        name: str,
        fields: Iterable[tuple[str, str]],
        kind: _Kind,
        timeout: float | None,
        *,
        on_done: Callable[[list[AmiMessage]], LinkItem] | None = None,
        hold: bool = False,
    ) -> _Pending:
        """Send one action on `session` and wait (bounded) until its pending slot completes."""
        if timeout is None:
            timeout = self._action_timeout
        action_id = str(self._ids())
        data = encode_action(name, action_id, fields)
        pending = session.register(name, action_id, kind, on_done, hold=hold)
        try:
            session.write(data)
            async with asyncio.timeout(timeout):
                await pending.future
        except TimeoutError:
            raise AmiActionTimeout(name, action_id, timeout) from None
        finally:
            session.forget(pending)
        return pending

    @property
    def pending_actions(self) -> int:
        """Actions sent on the current connection and not yet answered (or timed out)."""
        session = self._session
        return len(session.pending) if session is not None else 0

    def _live_session(self) -> _Session:
        session = self._session
        if session is None or not self.connected.is_set():
            raise AmiNotConnected(f"AMI link {self._host}:{self._port} is not logged in")
        return session

    # -- read path helpers (called synchronously from data_received) ----------------------

    def _decode(self, message: AmiMessage) -> PbxEvent | None:
        try:
            return decode_event(message)
        except AmiProtocolError as err:
            self.stats.malformed_events += 1
            name = message.event or "?"
            if name not in self._malformed_logged:
                self._malformed_logged.add(name)
                _log.warning("skipping malformed AMI event %s: %s", name, err)
            return None

    def _resynced_from(self, items: list[AmiMessage]) -> Resynced:
        channels: list[CoreShowChannel] = []
        for message in items:
            if message.event != "CoreShowChannel":
                continue
            event = self._decode(message)
            if isinstance(event, CoreShowChannel):
                channels.append(event)
        return Resynced(tuple(channels))

    def _put(self, item: LinkItem) -> None:
        """Enqueue without ever blocking: when full, drop the oldest item (see module doc)."""
        queue = self.events
        if self._burst_dropped:
            self._check_burst_end()
        try:
            queue.put_nowait(item)
        except asyncio.QueueFull:
            queue.get_nowait()
            self.stats.dropped_events += 1
            self._burst_dropped += 1
            if self._burst_dropped == 1:
                _log.warning(
                    "AMI events queue full (%d): dropping the oldest until the consumer catches up",
                    queue.maxsize,
                )
            queue.put_nowait(item)

    def _check_burst_end(self) -> None:
        if not self._burst_dropped or self.events.qsize() > self.events.maxsize // 2:
            return
        _log.warning(
            "AMI events queue drained; %d events were dropped, resyncing", self._burst_dropped
        )
        self._burst_dropped = 0
        if self._session is not None:
            self._session.request_resync()

    def _backoff(self, attempt: int) -> float:
        cap = min(self._backoff_max, self._backoff_initial * 2 ** min(attempt, 32))
        return self._rng.uniform(0.0, cap)
