"""The asyncio FastAGI server: accepts Asterisk's AGI connections and runs one handler per call.

Each connection is driven by the sans-I/O :class:`~ivr.protocol.agi.AgiServerConnection`
(section 4.2 of ``tests/fixtures/asterisk-traces/README.md``):

1. Read the header block within ``header_timeout``. Early EOF, garbage, an over-long block or
   silence drop the connection with one warning; the codec raises instead of spinning, and each
   connection is its own task, so other sessions are never held up.
2. Route by the script path (``agi_network_script`` without its query): an exact match first,
   then the longest prefix on ``/`` segments (``""`` is a catch-all). An unknown script is
   logged and the connection ended the normal way, without any command: Asterisk then sets
   ``AGISTATUS`` and the dialplan continues at the next priority, where it can handle the
   failure. (Sending a ``VERBOSE`` first would not help: nobody reads the console.)
3. Run the handler with an :class:`AgiSession`. ``session.send()`` writes one command and
   reads its reply, skipping (and remembering) unsolicited ``HANGUP`` lines; ``511`` raises
   :class:`AgiChannelHungUp`, EOF or a reset :class:`AgiConnectionLost`, no reply in time
   :class:`AgiCommandTimeout`.
4. When the handler returns, end like the traces: half-close (FIN), read until Asterisk writes
   its last ``HANGUP`` and closes (bounded by ``close_timeout``), then close. A handler error is
   logged once with the call's ``unique_id`` and the connection closed the same way.

Caller numbers are masked in log lines (:func:`callcenter.logmask.mask_number`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from callcenter.logmask import mask_number
from ivr.errors import IvrError
from ivr.protocol.agi import (
    AgiCommand,
    AgiEnvironment,
    AgiHangup,
    AgiProtocolError,
    AgiReply,
    AgiServerConnection,
    AgiState,
)

__all__ = [
    "AgiChannelHungUp",
    "AgiCommandTimeout",
    "AgiConnectionLost",
    "AgiHandler",
    "AgiSession",
    "FastAgiServer",
]

_log = logging.getLogger(__name__)
_READ_SIZE = 65536


class AgiChannelHungUp(IvrError):
    """The command got ``511``: the channel is gone (variable commands still work)."""

    error_id = "agi-channel-hung-up"


class AgiConnectionLost(IvrError):
    """Asterisk closed or reset the AGI connection."""

    error_id = "agi-connection-lost"


class AgiCommandTimeout(IvrError):
    """No reply within the command timeout; the session cannot be used any more."""

    error_id = "agi-command-timeout"


class AgiSession:
    """One call's AGI conversation, handed to a route handler.

    The session reads from Asterisk only while a command runs (res_agi sends nothing else but
    ``HANGUP`` lines), so ``hung_up`` turns True when a ``HANGUP`` line or a ``511`` has been
    read: a hangup between two commands shows once the next command is sent. Commands from
    concurrent tasks are serialised (one outstanding at a time, as res_agi requires).
    """

    __slots__ = (
        "_command_timeout",
        "_conn",
        "_failure",
        "_lock",
        "_reader",
        "_writer",
        "env",
        "hung_up",
    )

    def __init__(
        self,
        env: AgiEnvironment,
        connection: AgiServerConnection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        command_timeout: float,
    ) -> None:
        self.env = env
        self.hung_up = False
        self._conn = connection
        self._reader = reader
        self._writer = writer
        self._command_timeout = command_timeout
        self._lock = asyncio.Lock()
        self._failure: str | None = None  # why the connection is unusable, once it is

    @property
    def params(self) -> Mapping[str, str]:
        """The query parameters of the AGI URL (``agi://host/ivr/agent?queue=support``)."""
        return self.env.params

    @property
    def unique_id(self) -> str:
        return self.env.unique_id

    @property
    def usable(self) -> bool:
        """False once the connection was lost, reset, timed out or closed by Asterisk."""
        return self._failure is None and self._conn.state is not AgiState.CLOSED

    async def send(self, command: AgiCommand | str, *, timeout: float | None = None) -> AgiReply:
        """Send one command and return its reply (510 and 520 replies are returned too).

        `timeout` overrides the server's command timeout for this command (Dial, Record).
        """
        async with self._lock:
            if self._failure is not None:
                raise AgiConnectionLost(self._failure)
            limit = self._command_timeout if timeout is None else timeout
            try:
                self._skip_buffered_hangups()
                if self._conn.state is AgiState.CLOSED:
                    self._failure = "Asterisk closed the AGI connection"
                    raise AgiConnectionLost(self._failure)
                wire = self._conn.send_command(command)  # AgiEncodeError leaves us usable
                async with asyncio.timeout(limit):
                    self._writer.write(wire)
                    await self._writer.drain()
                    reply = await self._read_reply()
            except TimeoutError as err:
                self._failure = f"no reply to {command!r} within {limit} s"
                raise AgiCommandTimeout(self._failure) from err
            except OSError as err:  # ConnectionResetError, BrokenPipeError
                self._failure = f"AGI connection lost: {err}"
                raise AgiConnectionLost(self._failure) from err
            except AgiProtocolError as err:
                self._failure = f"AGI protocol error: {err}"
                raise
            if reply.code == 511:
                self.hung_up = True
                raise AgiChannelHungUp(f"{reply.command or 'command'}: channel is hung up (511)")
            return reply

    def _skip_buffered_hangups(self) -> None:
        while self._conn.state is AgiState.IDLE and (event := self._conn.next_event()):
            if isinstance(event, AgiHangup):
                self.hung_up = True

    async def _read_reply(self) -> AgiReply:
        while True:
            event = self._conn.next_event()
            if isinstance(event, AgiReply):
                return event
            if isinstance(event, AgiHangup):
                self.hung_up = True
                continue
            if self._conn.state is AgiState.CLOSED:
                self._failure = "Asterisk closed the AGI connection before replying"
                raise AgiConnectionLost(self._failure)
            self._conn.receive_data(await self._reader.read(_READ_SIZE))


AgiHandler = Callable[[AgiSession], Awaitable[None]]


def _normalise(script: str) -> str:
    return script.strip("/")


class FastAgiServer:
    """Listens for Asterisk's FastAGI connections and runs the handler routed by script path."""

    def __init__(
        self,
        routes: Mapping[str, AgiHandler],
        *,
        host: str = "127.0.0.1",
        port: int = 4573,
        header_timeout: float = 5.0,
        command_timeout: float = 30.0,
        max_header_bytes: int = 16384,
        close_timeout: float = 5.0,
        backlog: int = 1024,
    ) -> None:
        self._routes = {_normalise(script): handler for script, handler in routes.items()}
        self._host = host
        self._port = port
        self._header_timeout = header_timeout
        self._command_timeout = command_timeout
        self._max_header_bytes = max_header_bytes
        self._close_timeout = close_timeout
        self._backlog = backlog
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[Any]] = set()
        self._closing = False

    @property
    def port(self) -> int:
        """The bound port (useful with port=0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("FastAgiServer is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def active_sessions(self) -> int:
        """Connections being served right now (headers, handler or closing)."""
        return len(self._sessions)

    async def start(self) -> None:
        self._closing = False
        self._server = await asyncio.start_server(
            self._on_connect, self._host, self._port, backlog=self._backlog
        )
        _log.info("FastAGI server listening on %s:%d", self._host, self.port)

    async def run(self) -> None:
        """Start, then serve until cancelled; close on the way out."""
        await self.start()
        assert self._server is not None
        try:
            await self._server.serve_forever()
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop listening, cancel the running sessions and wait for them."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        tasks = set(self._sessions)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self._close_timeout)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def route(self, script_path: str) -> AgiHandler | None:
        """The handler for a script path: exact match, else the longest ``/``-segment prefix."""
        path = _normalise(script_path)
        handler = self._routes.get(path)
        if handler is not None:
            return handler
        segments = path.split("/") if path else []
        for size in range(len(segments) - 1, -1, -1):
            handler = self._routes.get("/".join(segments[:size]))
            if handler is not None:
                return handler
        return None

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The session runs in its own task so that close() can cancel it: cancelling the task
        # asyncio.start_server made would trip Python 3.11's streams callback (it calls
        # task.exception() on the cancelled task and logs "Exception in callback").
        if self._closing:
            writer.close()
            return
        session = asyncio.create_task(self._serve(reader, writer))
        self._sessions.add(session)
        try:
            await asyncio.wait({session})
        except asyncio.CancelledError:
            session.cancel()
            raise
        finally:
            self._sessions.discard(session)
            writer.close()
        if not session.cancelled() and (err := session.exception()) is not None:
            _log.error("FastAGI connection task failed", exc_info=err)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        conn = AgiServerConnection(max_header_bytes=self._max_header_bytes)
        try:
            async with asyncio.timeout(self._header_timeout):
                env = await self._read_environment(conn, reader)
        except TimeoutError:
            _log.warning(
                "FastAGI peer %s sent no header block within %.1f s; dropped",
                peer,
                self._header_timeout,
            )
            return
        except AgiProtocolError as err:
            _log.warning("FastAGI peer %s sent a bad header block (%s); dropped", peer, err)
            return
        except OSError as err:
            _log.warning("FastAGI peer %s failed before its header block: %s", peer, err)
            return

        script = env.script_path
        handler = self.route(script)
        if handler is None:
            _log.warning(
                "no FastAGI route for script %r (unique_id=%s); ending the session so the "
                "dialplan continues",
                script,
                env.unique_id,
            )
            await self._finish(conn, reader, writer, env)
            return

        _log.info(
            "AGI session started script=%s unique_id=%s channel=%s caller=%s",
            script,
            env.unique_id,
            env.channel,
            mask_number(env.caller_id),
        )
        session = AgiSession(env, conn, reader, writer, command_timeout=self._command_timeout)
        try:
            await handler(session)
        except AgiChannelHungUp as err:
            _log.info(
                "AGI handler for %s ended by hangup (unique_id=%s): %s", script, env.unique_id, err
            )
        except (AgiConnectionLost, AgiCommandTimeout) as err:
            _log.warning("AGI session %s (unique_id=%s) broke: %s", script, env.unique_id, err)
        except Exception:
            _log.exception("AGI handler for %s failed (unique_id=%s)", script, env.unique_id)
        if session.usable:
            await self._finish(conn, reader, writer, env)
        _log.info("AGI session ended script=%s unique_id=%s", script, env.unique_id)

    @staticmethod
    async def _read_environment(
        conn: AgiServerConnection, reader: asyncio.StreamReader
    ) -> AgiEnvironment:
        while True:
            event = conn.next_event()
            if isinstance(event, AgiEnvironment):
                return event
            conn.receive_data(await reader.read(_READ_SIZE))

    async def _finish(
        self,
        conn: AgiServerConnection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        env: AgiEnvironment,
    ) -> None:
        """Half-close and read until Asterisk closes (it writes HANGUP first), bounded."""
        try:
            if writer.can_write_eof():
                writer.write_eof()
            async with asyncio.timeout(self._close_timeout):
                while await reader.read(_READ_SIZE):
                    pass
        except TimeoutError:
            _log.warning(
                "Asterisk did not close AGI session unique_id=%s within %.1f s",
                env.unique_id,
                self._close_timeout,
            )
        except OSError as err:
            _log.debug("AGI session unique_id=%s closed with %s", env.unique_id, err)
