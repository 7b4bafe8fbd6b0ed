"""asyncio AudioSocket server: accepts Asterisk's connections and hands each call to the IVR.

How the IVR uses it (README section 4.3: Asterisk is the client and connects to us):

1. The FastAGI session picks a UUID and calls :meth:`AudioSocketServer.expect` **before** it
   sends ``EXEC AudioSocket <uuid>,host:port`` (:meth:`AudioSocketServer.exec_argument` builds
   the argument). The AGI command blocks until the AudioSocket session ends.
2. Asterisk connects and sends the UUID frame; the server resolves the future with the
   :class:`AudioSocketCall`. A connection whose UUID nobody expects goes to the optional
   catch-all `handler`; with no handler it is closed and logged.
3. The IVR reads caller audio and DTMF with :meth:`AudioSocketCall.frames`, plays prompts with
   :meth:`AudioSocketCall.play` (barge-in through its `stop` event) and ends the session with
   :meth:`AudioSocketCall.hangup` (``EXEC`` then returns ``200 result=0`` and the channel stays
   up) or :meth:`AudioSocketCall.close` (FIN, same result). If the caller hangs up, Asterisk
   just closes the socket: the frame iterator ends and ``caller_hung_up`` is true.

Reading is bounded: a per-call reader task decodes frames into an inbox of at most
`max_queued_frames` frames (default 500 = 10 s of audio). When a slow consumer lets it fill up,
the **oldest audio frame is dropped** (stale audio is worthless to an IVR, and back-pressure
would stall Asterisk's non-blocking writes and end the call); DTMF frames are only dropped if
the inbox holds nothing else. Drops are counted in ``dropped_frames`` and logged.

Anything that breaks the framing (unknown kind, bad length, a second UUID, no UUID within
`first_frame_timeout`, nothing at all for `idle_timeout`) closes that connection with one log
line; other calls are not affected. Writes go through
:func:`~ivr.protocol.audiosocket.encode_server_frame`, so this side can never send the DTMF or
other kinds that make Asterisk reset the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType

from ivr.protocol.audiosocket import (
    AUDIO_KINDS,
    FRAME_SECONDS,
    AudioSocketProtocolError,
    Frame,
    FrameDecoder,
    Kind,
    encode_server_frame,
    frame_uuid,
    split_pcm,
)

__all__ = [
    "AudioSocketCall",
    "AudioSocketHandler",
    "AudioSocketServer",
]

logger = logging.getLogger(__name__)

READ_BYTES = 65536
DEFAULT_MAX_QUEUED_FRAMES = 500
WRITE_TIMEOUT = 5.0
CLOSE_TIMEOUT = 2.0  # how long we wait for Asterisk's FIN after our hangup / FIN

AudioSocketHandler = Callable[["AudioSocketCall"], Awaitable[None]]


class _Inbox:
    """Bounded FIFO of received frames; when full, the oldest audio frame makes room."""

    __slots__ = ("_capacity", "_ended", "_items", "_wakeup", "dropped")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"max_queued_frames must be at least 1: {capacity}")
        self._capacity = capacity
        self._items: deque[Frame] = deque()
        self._ended = False
        self._wakeup = asyncio.Event()
        self.dropped = 0

    def put(self, frame: Frame) -> bool:
        """Queue `frame`; False if an older frame had to be dropped to make room."""
        room = len(self._items) < self._capacity
        if not room:
            for index, item in enumerate(self._items):
                if item.kind in AUDIO_KINDS:
                    del self._items[index]
                    break
            else:
                self._items.popleft()
            self.dropped += 1
        self._items.append(frame)
        self._wakeup.set()
        return room

    def end(self) -> None:
        """No more frames will come; readers get None once the queue is empty."""
        self._ended = True
        self._wakeup.set()

    async def get(self) -> Frame | None:
        while not self._items:
            if self._ended:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._items.popleft()


class AudioSocketCall:
    """One AudioSocket connection from Asterisk, identified by the UUID it sent first."""

    def __init__(
        self,
        call_id: uuid.UUID,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        decoder: FrameDecoder,
        *,
        idle_timeout: float = 10.0,
        max_queued_frames: int = DEFAULT_MAX_QUEUED_FRAMES,
    ) -> None:
        self.call_id = call_id
        self._reader = reader
        self._writer = writer
        self._decoder = decoder
        self._idle_timeout = idle_timeout
        self._inbox = _Inbox(max_queued_frames)
        self._write_lock = asyncio.Lock()
        self._local_end = False  # we sent hangup or FIN
        self._remote_end = asyncio.Event()  # reader finished: EOF, reset, error or timeout
        self._done = asyncio.Event()  # transport closed
        self._caller_hung_up = False
        self._error: str | None = None
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    # --- state -----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once no more audio can be exchanged (either side ended the session)."""
        return self._local_end or self._remote_end.is_set() or self._done.is_set()

    @property
    def caller_hung_up(self) -> bool:
        """True if Asterisk closed (or reset) the socket without our hangup: the caller left."""
        return self._caller_hung_up

    @property
    def dropped_frames(self) -> int:
        """Received frames dropped because the consumer fell `max_queued_frames` behind."""
        return self._inbox.dropped

    @property
    def error(self) -> str | None:
        """Why the connection was cut on our side (protocol error, idle timeout), if it was."""
        return self._error

    # --- receiving -------------------------------------------------------------------------

    async def frames(self) -> AsyncIterator[Frame]:
        """Audio and DTMF frames from the caller, in order; ends when the session ends."""
        while (frame := await self._inbox.get()) is not None:
            yield frame

    async def next_frame(self, timeout: float | None = None) -> Frame | None:
        """The next received frame, None once the session ended; TimeoutError after `timeout`."""
        async with asyncio.timeout(timeout):
            return await self._inbox.get()

    # --- sending ---------------------------------------------------------------------------

    async def send(self, kind: Kind, payload: bytes = b"") -> bool:
        """Send one frame; False if the session is already over.

        Raises :class:`~ivr.protocol.audiosocket.AudioSocketForbiddenKind` (before writing
        anything) for kinds Asterisk does not accept from a server, such as DTMF.
        """
        data = encode_server_frame(kind, payload)
        if kind is Kind.HANGUP:
            await self.hangup()
            return True
        return await self._write(data)

    async def play(self, pcm: bytes, *, stop: asyncio.Event | None = None) -> bool:
        """Play 8 kHz slin to the caller in 20 ms frames; True if it played to the end.

        Frame n is written at ``t0 + n * 0.020`` on the loop's monotonic clock, so a late wake-up
        is caught up by the next frame instead of adding drift. Returns once the last frame's
        20 ms have elapsed (back-to-back plays stay seamless), or False as soon as `stop` is set
        (barge-in, noticed within one frame) or the session ends.
        """
        frames = split_pcm(pcm)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index, chunk in enumerate(frames):
            if stop is not None and stop.is_set():
                return False
            delay = start + index * FRAME_SECONDS - loop.time()
            await asyncio.sleep(max(0.0, delay))  # sleep(0) when late: catch up, but yield
            if stop is not None and stop.is_set():
                return False
            if not await self._write(encode_server_frame(Kind.AUDIO, chunk)):
                return False
        tail = start + len(frames) * FRAME_SECONDS - loop.time()
        if tail > 0:
            await asyncio.sleep(tail)
        return not self.closed

    async def hangup(self) -> None:
        """Send the hangup frame (kind 0x00, length 0), then close; Asterisk's EXEC returns 0."""
        await self._end(send_hangup=True)

    async def close(self) -> None:
        """Close the socket without a hangup frame (FIN); Asterisk's EXEC also returns 0."""
        await self._end(send_hangup=False)

    async def wait_closed(self) -> None:
        """Wait until the connection is fully closed."""
        await self._done.wait()

    def abort(self) -> None:
        """Drop the connection at once (server shutdown)."""
        self._local_end = True
        self._writer.transport.abort()
        self._finished()

    # --- internals -------------------------------------------------------------------------

    async def _write(self, data: bytes) -> bool:
        async with self._write_lock:
            if self.closed:
                return False
            try:
                self._writer.write(data)
                async with asyncio.timeout(WRITE_TIMEOUT):
                    await self._writer.drain()
            except (OSError, TimeoutError) as err:
                logger.warning("audiosocket call %s: write failed: %r", self.call_id, err)
                self._error = f"write failed: {err!r}"
                self.abort()
                return False
        return True

    async def _end(self, *, send_hangup: bool) -> None:
        async with self._write_lock:
            if self._local_end or self._done.is_set():
                return
            self._local_end = True
            if not self._remote_end.is_set():
                try:
                    if send_hangup:
                        self._writer.write(encode_server_frame(Kind.HANGUP))
                    if self._writer.can_write_eof():
                        self._writer.write_eof()
                    async with asyncio.timeout(WRITE_TIMEOUT):
                        await self._writer.drain()
                except (OSError, TimeoutError) as err:
                    logger.info("audiosocket call %s: ending: %r", self.call_id, err)
        # Wait for Asterisk's own close so that closing never resets unread data in flight.
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._remote_end.wait()
        except TimeoutError:
            logger.warning(
                "audiosocket call %s: peer did not close within %.1fs of our %s",
                self.call_id,
                CLOSE_TIMEOUT,
                "hangup" if send_hangup else "FIN",
            )
        await self._close_transport()

    async def _close_transport(self) -> None:
        if self._done.is_set():
            return
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
        self._finished()

    def _finished(self) -> None:
        self._remote_end.set()
        self._inbox.end()
        self._done.set()

    async def read_loop(self) -> None:
        """Decode frames into the inbox until EOF, error or idle timeout (run as a task)."""
        try:
            await self._read_frames()
        finally:
            self._remote_end.set()
            self._inbox.end()
        if not self._local_end:
            await self._close_transport()

    async def _read_frames(self) -> None:
        decoder = self._decoder
        while True:
            try:
                while (frame := decoder.next_frame()) is not None:
                    if not self._accept(frame):
                        return
                if decoder.ended:
                    if not self._local_end:
                        self._caller_hung_up = True
                        logger.info("audiosocket call %s: caller hung up (EOF)", self.call_id)
                    return
                async with asyncio.timeout(self._idle_timeout):
                    data = await self._reader.read(READ_BYTES)
                decoder.receive_data(data)
            except AudioSocketProtocolError as err:
                self._cut(f"protocol error: {err}")
                return
            except TimeoutError:
                self._cut(f"nothing received for {self._idle_timeout:.1f}s")
                return
            except OSError as err:
                if not self._local_end:
                    self._caller_hung_up = True
                logger.info("audiosocket call %s: connection lost: %r", self.call_id, err)
                self._writer.transport.abort()
                self._finished()
                return

    def _accept(self, frame: Frame) -> bool:
        """Queue one received frame; False ends the session."""
        if frame.kind in AUDIO_KINDS or frame.kind is Kind.DTMF:
            if not self._inbox.put(frame) and self._inbox.dropped in (1, 100, 1000):
                logger.warning(
                    "audiosocket call %s: consumer too slow, %d frame(s) dropped",
                    self.call_id,
                    self._inbox.dropped,
                )
            return True
        if frame.kind is Kind.SILENCE:
            return True
        if frame.kind is Kind.HANGUP:
            if not self._local_end:
                self._caller_hung_up = True
            logger.info("audiosocket call %s: peer sent a hangup frame", self.call_id)
            return False
        if frame.kind is Kind.ERROR:
            self._cut(f"peer sent an error frame {frame.payload.hex()}")
            return False
        self._cut(f"protocol error: unexpected {frame.kind.name} frame after the UUID")
        return False

    def _cut(self, reason: str) -> None:
        logger.warning("audiosocket call %s from %s: %s; closing", self.call_id, self.peer, reason)
        self._error = reason
        self._local_end = True
        self._writer.transport.abort()
        self._finished()


class AudioSocketServer:
    """Listens for Asterisk's AudioSocket connections and routes each by its UUID."""

    def __init__(
        self,
        handler: AudioSocketHandler | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 4574,
        first_frame_timeout: float = 5.0,
        idle_timeout: float = 10.0,
        max_queued_frames: int = DEFAULT_MAX_QUEUED_FRAMES,
    ) -> None:
        self._handler = handler
        self._host = host
        self._port = port
        self._first_frame_timeout = first_frame_timeout
        self._idle_timeout = idle_timeout
        self._max_queued_frames = max_queued_frames
        self._server: asyncio.Server | None = None
        self._expected: dict[uuid.UUID, asyncio.Future[AudioSocketCall]] = {}
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._calls: set[AudioSocketCall] = set()

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The bound port (the ephemeral one when constructed with ``port=0``)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    def exec_argument(self, call_id: uuid.UUID) -> str:
        """The ``AudioSocket`` application argument for `call_id`: ``<uuid>,host:port``."""
        return f"{call_id},{self._host}:{self.port}"

    def expect(self, call_id: uuid.UUID) -> asyncio.Future[AudioSocketCall]:
        """Register `call_id`; the future resolves when Asterisk connects with that UUID.

        Call it before sending ``EXEC AudioSocket``. Cancel the future (e.g. after a
        ``wait_for`` timeout) to withdraw the registration.
        """
        current = self._expected.get(call_id)
        if current is not None and not current.done():
            raise ValueError(f"AudioSocket call {call_id} is already expected")
        future: asyncio.Future[AudioSocketCall] = asyncio.get_running_loop().create_future()
        self._expected[call_id] = future

        def forget(done: asyncio.Future[AudioSocketCall]) -> None:
            if self._expected.get(call_id) is done:
                del self._expected[call_id]

        future.add_done_callback(forget)
        return future

    async def start(self) -> None:
        """Start listening."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._on_connect, self._host, self._port)
        logger.info("audiosocket server listening on %s:%d", self._host, self.port)

    async def run(self) -> None:
        """Listen until cancelled, then close."""
        await self.start()
        assert self._server is not None
        try:
            await self._server.serve_forever()
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop listening and drop every open connection.

        Connections are aborted (their handlers see the frames end and `play` return False)
        and get `CLOSE_TIMEOUT` to finish; only then are stragglers cancelled.
        """
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for future in list(self._expected.values()):
            future.cancel()
        for call in list(self._calls):
            call.abort()
        for writer in self._connections.values():
            writer.transport.abort()
        tasks = list(self._connections)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=CLOSE_TIMEOUT)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> AudioSocketServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- one connection --------------------------------------------------------------------

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The connection runs in a task of ours: asyncio.streams (3.11) logs an error when the
        # client_connected_cb task itself ends cancelled, which close() may do to a straggler.
        task = asyncio.create_task(self._serve(reader, writer), name="audiosocket-connection")
        self._connections[task] = writer
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            # only the connection task was cancelled (by close()): this connection is over
        finally:
            self._connections.pop(task, None)
            if not writer.transport.is_closing():
                writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = writer.get_extra_info("peername")
        decoder = FrameDecoder()
        try:
            async with asyncio.timeout(self._first_frame_timeout):
                first = await _first_frame(reader, decoder)
            call_id = frame_uuid(first)
        except (AudioSocketProtocolError, TimeoutError, OSError) as err:
            reason = "no UUID frame in time" if isinstance(err, TimeoutError) else str(err)
            logger.warning("audiosocket connection from %s rejected: %s", peer, reason)
            writer.transport.abort()
            return

        call = AudioSocketCall(
            call_id,
            reader,
            writer,
            decoder,
            idle_timeout=self._idle_timeout,
            max_queued_frames=self._max_queued_frames,
        )
        self._calls.add(call)
        reading = asyncio.create_task(call.read_loop(), name=f"audiosocket-read-{call_id}")
        try:
            await self._route(call)
        finally:
            self._calls.discard(call)
            if not call.closed:
                call.abort()
            reading.cancel()
            try:
                await reading
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise

    async def _route(self, call: AudioSocketCall) -> None:
        waiter = self._expected.pop(call.call_id, None)
        if waiter is not None and not waiter.done():
            logger.info("audiosocket call %s connected from %s", call.call_id, call.peer)
            waiter.set_result(call)
            await call.wait_closed()
            return
        if self._handler is None:
            logger.warning(
                "audiosocket call %s from %s: unknown UUID, dropping", call.call_id, call.peer
            )
            await call.close()
            return
        logger.info("audiosocket call %s connected from %s (handler)", call.call_id, call.peer)
        try:
            await self._handler(call)
        except Exception:
            logger.exception("audiosocket call %s: handler failed", call.call_id)
        if not call.closed:
            await call.hangup()
        await call.wait_closed()


async def _first_frame(reader: asyncio.StreamReader, decoder: FrameDecoder) -> Frame:
    """Read until the first frame is decoded; it must be the UUID frame."""
    while (frame := decoder.next_frame()) is None:
        if decoder.ended:
            raise AudioSocketProtocolError("connection closed before the UUID frame")
        decoder.receive_data(await reader.read(READ_BYTES))
    if frame.kind is not Kind.UUID:
        raise AudioSocketProtocolError(f"first frame is {frame.kind.name}, expected UUID")
    return frame
