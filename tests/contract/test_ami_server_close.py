"""Closing the simulator's AMI server while a client is connected is quiet and complete."""

from __future__ import annotations

import asyncio
import logging

import pytest

from asterisk_sim.simulator import AsteriskSimulator
from tests.traces import TRACES_DIR

DIALPLAN = TRACES_DIR / "asterisk-etc" / "extensions.conf"


async def _read_until(reader: asyncio.StreamReader, marker: bytes, timeout: float = 5.0) -> bytes:
    data = b""
    async with asyncio.timeout(timeout):
        while marker not in data:
            chunk = await reader.read(65536)
            if not chunk:
                break
            data += chunk
    return data


async def test_given_a_logged_in_client_when_the_ami_server_closes_then_nothing_is_logged_as_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    sim = AsteriskSimulator(DIALPLAN, ami_user="bench", ami_secret="s3cret")
    await sim.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.ami_port)
    try:
        await _read_until(reader, b"\r\n")  # the banner
        writer.write(b"Action: Login\r\nActionID: l1\r\nUsername: bench\r\nSecret: s3cret\r\n\r\n")
        await _read_until(reader, b"FullyBooted")
        assert sim.ami.sessions  # the connection is being served

        await asyncio.wait_for(sim.close(), 10)
        rest = await _read_until(reader, b"\x00never")  # reads up to EOF

        assert b"Event: Shutdown" in rest
        assert not sim.ami.sessions
        # Let any done-callback (asyncio.streams' one included) run before looking at the log.
        for _ in range(3):
            await asyncio.sleep(0)
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == [], [r.getMessage() for r in errors]
    finally:
        writer.close()
        await writer.wait_closed()


async def test_given_a_client_that_sent_nothing_when_the_ami_server_closes_then_it_sees_eof(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = AsteriskSimulator(DIALPLAN)
    await sim.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.ami_port)
    try:
        await _read_until(reader, b"\r\n")
        await asyncio.wait_for(sim.close(), 10)

        assert await asyncio.wait_for(reader.read(), 5) == b""
        for _ in range(3):
            await asyncio.sleep(0)
        assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    finally:
        writer.close()
        await writer.wait_closed()
