"""The simulator's AMI server: banner, login, per-session event filter, action dispatch.

Follows ``tests/fixtures/asterisk-traces/README.md`` section 4.1 and the ``ami-*.ami.jsonl``
traces: the banner ``Asterisk Call Manager/11.0.0\\r\\n`` is written at once; any action but
``Login`` before authentication gets ``Permission denied``; a wrong secret gets
``Authentication failed`` after a delay (1 s like Asterisk; configurable) and the socket is
closed; a successful login with events on is followed by ``FullyBooted`` in the same write and
a ``SuccessfulAuth`` security event. Events are written only to sessions that logged in with
events on. Events raised while an action runs are held until its response has been written,
which is the order Asterisk's asynchronous event queue produces in the traces.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets as pysecrets
import time
from datetime import UTC, datetime

from acd.protocol.ami import BANNER, AmiDecoder, AmiMessage, AmiProtocolError, encode_message
from asterisk_sim import event_templates as ev
from asterisk_sim.ami_actions import ActionContext, dispatch
from asterisk_sim.pbx import Pbx

_log = logging.getLogger(__name__)

Headers = list[tuple[str, str]]


def _event_tv() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+0000"


class AmiSession:
    """One AMI connection."""

    def __init__(
        self,
        server: AmiServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.authenticated = False
        self.username = ""
        self.events_on = False
        self.closed = False
        self._holding = 0
        self._held: list[bytes] = []
        self.session_id = f"0x{pysecrets.randbits(44):x}"
        self.session_tv = _event_tv()
        sock = writer.get_extra_info("sockname") or ("127.0.0.1", 0)
        peer = writer.get_extra_info("peername") or ("127.0.0.1", 0)
        self.local_address = f"IPV4/TCP/{sock[0]}/{sock[1]}"
        self.remote_address = f"IPV4/TCP/{peer[0]}/{peer[1]}"

    # -- output ------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.closed or self.writer.is_closing():
            return
        self.writer.write(data)

    def send(self, *messages: Headers) -> None:
        """Write messages now, in one write."""
        self.write(b"".join(encode_message(m) for m in messages))

    def on_event(self, headers: Headers) -> None:
        """Bus listener: deliver an event if this session wants events."""
        if not (self.authenticated and self.events_on):
            return
        data = encode_message(headers)
        if self._holding:
            self._held.append(data)
        else:
            self.write(data)

    def security_event(self, name: str, severity: str, *extra: tuple[str, str]) -> Headers:
        return [
            ("Event", name),
            ("Privilege", "security,all"),
            ("EventTV", _event_tv()),
            ("Severity", severity),
            ("Service", "AMI"),
            ("EventVersion", "1"),
            *extra,
        ]

    # -- input -------------------------------------------------------------------------------

    async def run(self) -> None:
        decoder = AmiDecoder(expect_banner=False)
        unsubscribe = self.server.pbx.bus.subscribe(self.on_event)
        try:
            self.write(BANNER)
            while not self.closed:
                data = await self.reader.read(65536)
                decoder.receive_data(data)
                while not self.closed:
                    try:
                        message = decoder.next_event()
                    except AmiProtocolError as err:
                        _log.warning("AMI client sent garbage: %s", err)
                        self.closed = True
                        break
                    if not isinstance(message, AmiMessage):
                        break
                    await self.handle(message)
                if not data:
                    break
        except (ConnectionError, OSError) as err:
            _log.debug("AMI session ended: %s", err)
        finally:
            unsubscribe()
            self.closed = True
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                self.writer.close()
                await self.writer.wait_closed()

    async def handle(self, message: AmiMessage) -> None:
        """Run one action; events it causes are written after its response."""
        self._holding += 1
        try:
            await dispatch(ActionContext(self, message))
        finally:
            self._holding -= 1
            if not self._holding and self._held:
                held, self._held = self._held, []
                self.write(b"".join(held))
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.drain()

    def close_soon(self) -> None:
        """Stop reading; run() closes the socket."""
        self.closed = True


class AmiServer:
    """An asyncio TCP server speaking Asterisk 22's AMI over the simulator's PBX."""

    def __init__(
        self,
        pbx: Pbx,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        users: dict[str, str] | None = None,
        auth_fail_delay: float = 1.0,
    ) -> None:
        self.pbx = pbx
        self.host = host
        self._port = port
        self.users = dict(users or {"ivr": "ivrsecret"})
        self.auth_fail_delay = auth_fail_delay
        self._server: asyncio.Server | None = None
        self.sessions: set[AmiSession] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # one per connection: its session.run()
        self._closing = False
        self._close_timeout = 5.0
        self.started_epoch = time.time()

    @property
    def port(self) -> int:
        """The bound TCP port (after start())."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._closing = False
        self._server = await asyncio.start_server(self._accept, self.host, self._port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The session runs in a task of its own, which close() cancels; this callback task
        # (made by asyncio.start_server) only waits for it. Cancelling the callback task itself
        # would make Python 3.11's asyncio.streams log "Exception in callback ...
        # CancelledError" (it calls exception() on the cancelled task). As in
        # ivr/adapters/fastagi_server.py.
        if self._closing:
            writer.close()
            return
        session = AmiSession(self, reader, writer)
        self.sessions.add(session)
        task = asyncio.create_task(session.run())
        self._tasks.add(task)
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            self._tasks.discard(task)
            self.sessions.discard(session)
        if not task.cancelled() and (err := task.exception()) is not None:
            _log.error("AMI session task failed", exc_info=err)

    async def close(self, *, shutdown_event: bool = True) -> None:
        """Stop accepting; like ``core stop now``: ``Shutdown`` to each session, then close."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions):
            if shutdown_event and session.authenticated and session.events_on:
                session.send(ev.shutdown())
            session.close_soon()
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                session.writer.close()
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self._close_timeout)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
