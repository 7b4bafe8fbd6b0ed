"""The asyncio Protocol of the AMI link: feeds socket bytes to the AMI codec and hands on messages.

This replaces panoramisk's ``AMIProtocol``, whose ``data_received`` mixes framing, parsing,
response correlation, dispatch to callbacks and reconnect decisions (see STYLE.md). Here
``data_received`` does exactly two things: feed :class:`acd.protocol.ami.AmiDecoder` and pass
every complete banner or message to a :class:`AmiSink`, synchronously. The sink (the link's
session) may only do cheap, non-blocking work: match an ActionID, decode an event, enqueue. No
task is started and nothing is awaited here.

A framing error (:class:`AmiProtocolError`) means the byte stream can no longer be trusted: the
sink is told once and the transport is aborted, so the link reconnects.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol, cast

from acd.protocol.ami import AmiBanner, AmiDecoder, AmiMessage, AmiProtocolError

__all__ = ["AmiSink", "AmiStreamProtocol"]

_log = logging.getLogger(__name__)


class AmiSink(Protocol):
    """Receives what the protocol decodes; called synchronously on the event loop."""

    def connection_made(self, transport: asyncio.Transport) -> None: ...

    def banner_received(self, banner: AmiBanner) -> None: ...

    def message_received(self, message: AmiMessage) -> None: ...

    def stream_failed(self, error: AmiProtocolError) -> None: ...

    def connection_lost(self, exc: Exception | None) -> None: ...


class AmiStreamProtocol(asyncio.Protocol):
    """Bytes from the AMI socket -> AmiDecoder -> sink, with no other work in the read path."""

    def __init__(self, sink: AmiSink) -> None:
        self._sink = sink
        self._decoder = AmiDecoder(expect_banner=True)
        self._transport: asyncio.Transport | None = None
        self._failed = False

    @property
    def transport(self) -> asyncio.Transport | None:
        """The transport once connected (None before connection_made)."""
        return self._transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._sink.connection_made(self._transport)

    def data_received(self, data: bytes) -> None:
        if self._failed:
            return
        decoder = self._decoder
        sink = self._sink
        try:
            decoder.receive_data(data)
            while (item := decoder.next_event()) is not None:
                if isinstance(item, AmiMessage):
                    sink.message_received(item)
                else:
                    sink.banner_received(item)
        except AmiProtocolError as err:
            self._fail(err)

    def eof_received(self) -> bool | None:
        if not self._failed:
            try:
                self._decoder.receive_data(b"")
                # Raises if the peer closed in the middle of a message.
                self._decoder.next_event()
            except AmiProtocolError as err:
                self._fail(err)
        return False  # let asyncio close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._sink.connection_lost(exc)

    def _fail(self, err: AmiProtocolError) -> None:
        self._failed = True
        _log.debug("AMI stream failed: %s", err)
        self._sink.stream_failed(err)
        if self._transport is not None:
            self._transport.abort()
