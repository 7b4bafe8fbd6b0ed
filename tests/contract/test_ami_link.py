"""Contract tests of the AMI link against a fake server that replays recorded Asterisk bytes.

The fake server (below) sends the recorded banner and answers each action with the exact bytes
Asterisk 22 sent after that action in a trace (tests/fixtures/asterisk-traces), with the
recorded ActionID rewritten to the one the link generated. Kernel read boundaries are kept: each
recorded read is one write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from acd.adapters.ami_link import (
    AmiActionError,
    AmiActionTimeout,
    AmiConnectionLost,
    AmiLink,
    AmiNotConnected,
    LinkItem,
    LinkStateChanged,
    Resynced,
)
from acd.domain.pbx_events import (
    CoreShowChannel,
    FullyBooted,
    Newexten,
    OriginateResponse,
    PbxEvent,
    Shutdown,
    UnknownEvent,
)
from acd.protocol.ami import AmiDecoder, AmiMessage
from acd.protocol.ami_events import decode_event
from tests.traces import load

WAIT = 5.0  # upper bound of every wait in these tests (they finish far sooner)
USER = "ivr"
SECRET = "ivrsecret"  # the secret recorded in the traces' Login actions

# --- the recorded replies -----------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """What Asterisk sent after one recorded action, up to the next action (one chunk per read)."""

    action_id: str
    chunks: tuple[bytes, ...]
    closes: bool  # Asterisk closed the socket after these bytes

    def render(self, action_id: str | None) -> list[bytes]:
        if action_id is None:
            return list(self.chunks)
        old = f"ActionID: {self.action_id}\r\n".encode()
        new = f"ActionID: {action_id}\r\n".encode()
        # An ActionID may straddle two reads (Getvar of a global): rewrite on the joined bytes.
        joined = b"".join(self.chunks).replace(old, new)
        out, pos = [], 0
        for chunk in self.chunks[:-1]:
            out.append(joined[pos : pos + len(chunk)])
            pos += len(chunk)
        out.append(joined[pos:])
        return [c for c in out if c]


@dataclass(frozen=True)
class Trace:
    banner: bytes
    replies: dict[str, Recorded]
    after_notes: tuple[bytes, ...]  # unsolicited bytes recorded after a meta note (Shutdown)


def recorded(name: str) -> Trace:
    """Split an AMI trace into the banner and the reply bytes of each recorded ActionID."""
    records = load(f"{name}.ami.jsonl")
    banner = b""
    replies: dict[str, Recorded] = {}
    current: str | None = None
    chunks: list[bytes] = []
    after: list[bytes] = []
    in_note = False

    def flush(closes: bool) -> None:
        if current is not None:
            replies[current] = Recorded(current, tuple(chunks), closes)

    for rec in records:
        if rec.dir == "out":
            flush(False)
            decoder = AmiDecoder(expect_banner=False)
            decoder.receive_data(rec.data)
            action = decoder.next_event()
            assert isinstance(action, AmiMessage)
            current, chunks, in_note = action.action_id, [], False
        elif rec.dir == "meta" and rec.event == "note":
            in_note = True
        elif rec.dir == "in":
            if current is None and not banner:
                banner = rec.data
            elif in_note:
                after.append(rec.data)
            else:
                chunks.append(rec.data)
    flush(records[-1].event == "eof")
    return Trace(banner, replies, tuple(after))


ACTIONS = recorded("ami-actions")
LOGIN = recorded("ami-login")
ERRORS = recorded("ami-errors")
SHUTDOWN = recorded("ami-shutdown")
RECONNECT = recorded("ami-reconnect")
LOGIN_BAD = recorded("ami-login-bad")

# --- the fake server ----------------------------------------------------------------------


@dataclass
class FakeAmi:
    """TCP server on 127.0.0.1: the recorded banner, then `routes[Action]` for each action.

    A route of None never answers (a hung action). With `hold_replies` set, replies are kept
    until `release(reverse=...)`.
    """

    routes: dict[str, Recorded | None]
    banner: bytes = LOGIN.banner
    received: list[AmiMessage] = field(default_factory=list)
    connections: int = 0
    hold_replies: bool = False
    _held: list[tuple[asyncio.StreamWriter, list[bytes]]] = field(default_factory=list)
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)
    _server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        self.drop()
        if self._server is not None:
            self._server.close()
            await asyncio.wait_for(self._server.wait_closed(), WAIT)

    def drop(self) -> None:
        """Close every open connection (mid-stream, without a Goodbye)."""
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    def inject(self, chunks: tuple[bytes, ...] | list[bytes]) -> None:
        """Write unsolicited bytes (events) to every open connection."""
        for writer in self._writers:
            for chunk in chunks:
                writer.write(chunk)

    def release(self, *, reverse: bool = False) -> None:
        held = list(reversed(self._held)) if reverse else self._held
        for writer, chunks in held:
            for chunk in chunks:
                writer.write(chunk)
        self._held = []

    def actions(self, name: str) -> list[AmiMessage]:
        return [m for m in self.received if m.action == name]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        writer.write(self.banner)
        decoder = AmiDecoder(expect_banner=False)
        with contextlib.suppress(ConnectionError):
            while data := await asyncio.wait_for(reader.read(65536), 60):
                decoder.receive_data(data)
                while (action := decoder.next_event()) is not None:
                    assert isinstance(action, AmiMessage)
                    self.received.append(action)
                    if not self._answer(writer, action):
                        return
        writer.close()

    def _answer(self, writer: asyncio.StreamWriter, action: AmiMessage) -> bool:
        """Write the recorded reply; False once the connection is closed after it."""
        reply = self.routes.get(action.action or "")
        if reply is None:
            return True
        chunks = reply.render(action.action_id)
        if self.hold_replies:
            self._held.append((writer, chunks))
            return True
        for chunk in chunks:
            writer.write(chunk)
        if reply.closes:
            writer.close()
            if writer in self._writers:
                self._writers.remove(writer)
            return False
        return True


def base_routes() -> dict[str, Recorded | None]:
    return {
        "Login": LOGIN.replies["login-1"],
        "Ping": LOGIN.replies["ping-1"],
        "CoreShowChannels": ACTIONS.replies["coreshowchannels-1"],
    }


# --- helpers ------------------------------------------------------------------------------


def make_link(port: int, **options: Any) -> AmiLink:
    """A link with short timeouts and back-off (seeded jitter) for tests; `options` override."""
    settings: dict[str, Any] = {
        "action_timeout": 2.0,
        "heartbeat_interval": 30.0,
        "backoff_initial": 0.01,
        "backoff_max": 0.05,
        "connect_timeout": 2.0,
        "rng": random.Random(7),
    }
    settings.update(options)
    return AmiLink("127.0.0.1", port, USER, SECRET, **settings)


@contextlib.asynccontextmanager
async def running(
    routes: dict[str, Recorded | None], **options: Any
) -> AsyncIterator[tuple[FakeAmi, AmiLink]]:
    fake = FakeAmi(routes)
    port = await fake.start()
    link = make_link(port, **options)
    task = asyncio.create_task(link.run())
    try:
        yield fake, link
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await fake.stop()


async def take_until(
    link: AmiLink, predicate: Callable[[LinkItem], bool]
) -> tuple[LinkItem, list[LinkItem]]:
    """Pop queue items until one matches; return it and the items before it."""
    before: list[LinkItem] = []
    async with asyncio.timeout(WAIT):
        while True:
            item = await link.events.get()
            if predicate(item):
                return item, before
            before.append(item)


async def resynced(link: AmiLink) -> tuple[Resynced, list[LinkItem]]:
    item, before = await take_until(link, lambda i: isinstance(i, Resynced))
    assert isinstance(item, Resynced)
    return item, before


async def poll(condition: Callable[[], bool], step: float = 0.005) -> None:
    """Bounded polling: wait until `condition()` holds, for at most WAIT seconds."""
    for _ in range(int(WAIT / step)):
        if condition():
            return
        await asyncio.sleep(step)
    raise AssertionError("condition not met within the wait bound")


# --- login, resync, FullyBooted -----------------------------------------------------------


@pytest.mark.parametrize("login", [LOGIN.replies["login-1"], RECONNECT.replies["login-1"]])
async def test_given_recorded_login_when_link_runs_then_it_logs_in_resyncs_and_sees_fully_booted(
    login: Recorded,
) -> None:
    routes = base_routes() | {"Login": login}
    async with running(routes) as (fake, link):
        await link.wait_fully_booted(timeout=WAIT)
        snapshot, before = await resynced(link)

        assert link.connected.is_set()
        assert before[0] == LinkStateChanged(connected=True, reason="logged in")
        assert any(isinstance(i, FullyBooted) and i.status == "Fully Booted" for i in before)
        assert any(isinstance(i, UnknownEvent) and i.name == "SuccessfulAuth" for i in before)
        assert len(snapshot.channels) == 6
        assert all(isinstance(c, CoreShowChannel) for c in snapshot.channels)
        assert "Local/bcall@trace-calls-00000000;1" in {c.channel.name for c in snapshot.channels}
        (login_action,) = fake.actions("Login")
        assert login_action.get("Username") == USER
        assert login_action.get("Events") == "on"


async def test_given_link_not_logged_in_when_action_sent_then_it_fails_fast() -> None:
    link = make_link(1)
    with pytest.raises(AmiNotConnected):
        await link.send_action("Ping")


# --- correlation --------------------------------------------------------------------------


async def test_given_event_between_originate_and_its_response_then_originate_gets_its_failure() -> (
    None
):
    routes = base_routes() | {"Originate": ACTIONS.replies["originate-fail-async"]}
    async with running(routes) as (fake, link):
        await resynced(link)
        result = await link.originate(
            "Local/nosuch@no-such-context",
            [("Application", "Wait"), ("Data", "5"), ("CallerID", "Alice <+15551230001>")],
        )

        assert result.response == "Failure"
        assert result.unique_id is None
        assert result.reason == 0
        assert result.channel_name == "Local/nosuch@no-such-context"
        (sent,) = fake.actions("Originate")
        assert sent.get("Async") == "true"
        assert result.action_id == sent.action_id
        # The Newexten that arrived before the Response, and the OriginateResponse, are events.
        _, before = await take_until(link, lambda i: isinstance(i, OriginateResponse))
        assert any(isinstance(i, Newexten) for i in before)


async def test_given_async_originate_succeeds_then_its_response_is_returned_and_queued() -> None:
    routes = base_routes() | {"Originate": ACTIONS.replies["originate-bridged"]}
    async with running(routes) as (_, link):
        await resynced(link)
        result = await link.originate(
            "Local/bcall@trace-calls", [("Application", "Wait"), ("Data", "120")]
        )

        assert result.response == "Success"
        assert result.unique_id == "1795331344.0"
        assert result.reason == 4
        queued, _ = await take_until(link, lambda i: isinstance(i, OriginateResponse))
        assert queued == result


async def test_given_sync_originate_error_then_action_error_carries_asterisk_message() -> None:
    routes = base_routes() | {"Originate": ACTIONS.replies["originate-fail-sync"]}
    async with running(routes) as (_, link):
        await resynced(link)
        with pytest.raises(AmiActionError) as caught:
            await link.originate("Local/nosuch@no-such-context", [("Application", "Wait")])
        assert caught.value.message == "Originate failed"


async def test_given_replies_in_reverse_order_then_each_action_gets_its_own_response() -> None:
    routes = base_routes() | {"CoreStatus": LOGIN.replies["corestatus-1"]}
    async with running(routes) as (fake, link):
        await resynced(link)
        fake.hold_replies = True
        ping = asyncio.create_task(link.send_action("Ping"))
        status = asyncio.create_task(link.send_action("CoreStatus"))
        await poll(lambda: len(fake._held) == 2)
        fake.release(reverse=True)

        assert (await ping).get("Ping") == "Pong"
        assert (await status).get("CoreCurrentCalls") == "0"


async def test_given_hung_action_when_it_times_out_then_later_ping_still_succeeds() -> None:
    routes = base_routes() | {"QueueAdd": None}
    async with running(routes) as (_, link):
        await resynced(link)
        hung = asyncio.create_task(
            link.send_action(
                "QueueAdd",
                [("Queue", "support"), ("Interface", "Local/1005@trace-agents/n")],
                timeout=1.0,
            )
        )
        await poll(lambda: link.pending_actions == 1)

        pong = await link.send_action("Ping")  # answered while QueueAdd is still pending
        assert pong.get("Ping") == "Pong"
        with pytest.raises(AmiActionTimeout):
            await hung
        assert link.pending_actions == 0
        assert (await link.send_action("Ping")).get("Ping") == "Pong"


# --- list actions and errors --------------------------------------------------------------


async def test_given_core_show_channels_then_six_items_are_collected_and_not_queued() -> None:
    async with running(base_routes()) as (_, link):
        await resynced(link)
        items = await link.send_list_action("CoreShowChannels")

        assert [m.event for m in items] == ["CoreShowChannel"] * 6
        assert link.events.empty()


async def test_given_empty_core_show_channels_then_the_list_is_empty() -> None:
    routes = base_routes() | {"CoreShowChannels": ACTIONS.replies["coreshowchannels-empty"]}
    async with running(routes) as (_, link):
        snapshot, _ = await resynced(link)
        assert snapshot.channels == ()
        assert await link.send_list_action("CoreShowChannels") == []


async def test_given_queue_status_then_params_and_members_are_collected() -> None:
    routes = base_routes() | {"QueueStatus": ACTIONS.replies["queuestatus-all"]}
    async with running(routes) as (_, link):
        await resynced(link)
        items = await link.send_list_action("QueueStatus")
        assert {m.event for m in items} <= {"QueueParams", "QueueMember"}
        assert "QueueParams" in {m.event for m in items}


async def test_given_status_of_unknown_channel_then_plain_error_raises_action_error() -> None:
    routes = base_routes() | {"Status": ERRORS.replies["status-no-channel"]}
    async with running(routes) as (_, link):
        await resynced(link)
        with pytest.raises(AmiActionError) as caught:
            await link.send_list_action("Status", [("Channel", "Local/nosuch@nowhere-00000099;1")])
        assert caught.value.message == "No such channel"
        assert caught.value.error_id == "ami-action-error"
        assert link.pending_actions == 0


# --- connection loss, shutdown, heartbeat -------------------------------------------------


async def test_given_server_closes_mid_stream_then_in_flight_action_fails_and_link_resyncs() -> (
    None
):
    routes = base_routes() | {"QueueAdd": None}
    async with running(routes) as (fake, link):
        await resynced(link)
        in_flight = asyncio.create_task(link.send_action("QueueAdd", [("Queue", "support")]))
        await poll(lambda: link.pending_actions == 1)

        fake.drop()

        with pytest.raises(AmiConnectionLost):
            await in_flight
        lost, _ = await take_until(link, lambda i: isinstance(i, LinkStateChanged))
        assert isinstance(lost, LinkStateChanged)
        assert not lost.connected
        assert lost.retry_in is not None
        assert 0 <= lost.retry_in <= 0.05
        back, _ = await take_until(link, lambda i: isinstance(i, LinkStateChanged))
        assert back == LinkStateChanged(connected=True, reason="logged in")
        snapshot, _ = await resynced(link)
        assert len(snapshot.channels) == 6
        assert fake.connections == 2
        assert len(fake.actions("CoreShowChannels")) == 2


async def test_given_shutdown_event_then_link_reconnects_without_waiting_for_eof() -> None:
    async with running(base_routes()) as (fake, link):
        await resynced(link)
        fake.inject(SHUTDOWN.after_notes)  # the recorded Event: Shutdown; the fake never closes

        shutdown, _ = await take_until(link, lambda i: isinstance(i, Shutdown))
        assert shutdown == Shutdown(shutdown="Cleanly", restart=False)
        lost, _ = await take_until(link, lambda i: isinstance(i, LinkStateChanged))
        assert isinstance(lost, LinkStateChanged)
        assert not lost.connected
        assert "Shutdown" in lost.reason
        await resynced(link)
        assert fake.connections == 2


async def test_given_heartbeat_when_ping_is_answered_then_link_stays_up() -> None:
    async with running(base_routes(), heartbeat_interval=0.02) as (fake, link):
        await resynced(link)
        await poll(lambda: len(fake.actions("Ping")) >= 3)
        assert fake.connections == 1
        assert link.connected.is_set()


async def test_given_heartbeat_when_ping_is_never_answered_then_link_reconnects() -> None:
    routes = base_routes() | {"Ping": None}
    async with running(routes, heartbeat_interval=0.02, action_timeout=0.1) as (fake, link):
        await resynced(link)
        lost, _ = await take_until(link, lambda i: isinstance(i, LinkStateChanged))
        assert isinstance(lost, LinkStateChanged)
        assert not lost.connected
        assert "Ping" in lost.reason
        await resynced(link)
        assert fake.connections == 2


# --- login failure ------------------------------------------------------------------------


async def test_given_bad_secret_then_link_backs_off_and_never_logs_the_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    routes = base_routes() | {"Login": LOGIN_BAD.replies["login-1"]}
    async with running(routes) as (fake, link):
        await poll(lambda: link.stats.login_failures >= 3)

        assert not link.connected.is_set()
        assert link.stats.sessions == 0
        assert link.stats.last_backoff is not None
        assert 0 <= link.stats.last_backoff <= 0.05
        assert fake.connections >= 3
        assert fake.actions("Login")[0].get("Secret") == SECRET  # it was sent...
    assert "Authentication failed" in caplog.text
    assert SECRET not in caplog.text  # ...and never logged
    assert link.events.empty()


# --- back-pressure ------------------------------------------------------------------------


def events_in(chunks: list[bytes]) -> list[PbxEvent]:
    decoder = AmiDecoder(expect_banner=False)
    decoder.receive_data(b"".join(chunks))
    out = []
    while (message := decoder.next_event()) is not None:
        assert isinstance(message, AmiMessage)
        if message.event is not None:
            out.append(decode_event(message))
    return out


async def test_given_full_queue_then_oldest_events_are_dropped_logged_once_and_resynced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="acd.adapters.ami_link")
    burst = ACTIONS.replies["originate-bridged"].render(None)
    expected = events_in(burst)
    assert len(expected) > 20
    async with running(base_routes(), events_queue_size=4) as (fake, link):
        await resynced(link)
        assert link.events.empty()

        fake.inject(burst)
        await poll(lambda: link.stats.dropped_events == len(expected) - 4)

        assert [r.getMessage() for r in caplog.records if "queue full" in r.getMessage()] == [
            "AMI events queue full (4): dropping the oldest until the consumer catches up"
        ]
        assert [link.events.get_nowait() for _ in range(4)] == expected[-4:]

        # The consumer caught up: the next event ends the burst and the link resyncs.
        fake.inject(ACTIONS.replies["originate-hold"].render(None)[-1:])
        snapshot, _ = await resynced(link)
        assert len(snapshot.channels) == 6
        assert any("were dropped" in r.getMessage() for r in caplog.records)


async def test_given_bytes_that_break_ami_framing_then_link_reconnects() -> None:
    async with running(base_routes()) as (fake, link):
        await resynced(link)
        fake.inject([b"this line has no colon\r\n\r\n"])

        lost, _ = await take_until(link, lambda i: isinstance(i, LinkStateChanged))
        assert isinstance(lost, LinkStateChanged)
        assert not lost.connected
        assert "protocol error" in lost.reason
        await resynced(link)
        assert fake.connections == 2


# --- against the Asterisk simulator -------------------------------------------------------

SIM_DIALPLAN = "[trace-calls]\nexten => hold,1,Answer()\n same => n,Wait(120)\n"


async def test_given_simulator_when_call_originated_then_link_sees_it_and_resyncs_it() -> None:
    simulator = pytest.importorskip("asterisk_sim.simulator")
    sim = simulator.AsteriskSimulator(SIM_DIALPLAN, time_scale=0.1)
    await sim.start()
    link = make_link(sim.ami_port)
    task = asyncio.create_task(link.run())
    try:
        empty, _ = await resynced(link)
        assert empty.channels == ()

        result = await link.originate(
            "Local/hold@trace-calls", [("Application", "Wait"), ("Data", "120")], timeout=WAIT
        )
        assert result.response == "Success"
        assert result.unique_id is not None
        channels = await link.resync()
        assert {c.channel.name for c in channels} == {
            "Local/hold@trace-calls-00000000;1",
            "Local/hold@trace-calls-00000000;2",
        }

        await sim.close()  # like `core stop now`: Shutdown, then the socket closes
        _, before = await take_until(
            link, lambda i: isinstance(i, LinkStateChanged) and not i.connected
        )
        assert any(isinstance(i, Shutdown) for i in before)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sim.close()


async def test_given_nothing_listening_then_link_keeps_retrying_with_capped_backoff() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()  # the port is now refused

    link = make_link(port)
    task = asyncio.create_task(link.run())
    try:
        await poll(lambda: link.stats.connect_attempts >= 4)
        assert not link.connected.is_set()
        assert link.stats.last_backoff is not None
        assert 0 <= link.stats.last_backoff <= 0.05
        assert link.events.empty()  # no session, so no state changes to report
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
