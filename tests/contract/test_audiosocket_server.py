"""Contract tests: the AudioSocket server against the simulator's AudioSocket() client and raw
sockets replaying the bytes Asterisk 22 sent (trace README section 4.3), over real loopback TCP."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from asterisk_sim.audio import silence, tone
from asterisk_sim.audiosocket_client import CallerAudio, run_audiosocket
from ivr.adapters.audiosocket_server import AudioSocketCall, AudioSocketServer
from ivr.protocol.audiosocket import (
    FRAME_BYTES,
    AudioSocketForbiddenKind,
    Frame,
    FrameDecoder,
    Kind,
    audio_frame,
    dtmf_frame,
    frame_digit,
    hangup_frame,
    split_pcm,
    uuid_frame,
)
from tests.traces import TRACES_DIR, trace_names

HOST = "127.0.0.1"
CALL_ID = uuid.UUID("6f0c1a52-0a0b-4c8e-9d6f-00000000000a")
OTHER_ID = uuid.UUID("6f0c1a52-0a0b-4c8e-9d6f-0000000000ff")
WAIT = 5.0

Handler = Callable[[AudioSocketCall], Awaitable[None]]


@asynccontextmanager
async def serving(
    handler: Handler | None = None, **options: float
) -> AsyncIterator[AudioSocketServer]:
    server = AudioSocketServer(handler, host=HOST, port=0, **options)  # type: ignore[arg-type]
    async with server:
        yield server


async def wait_until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    """Bounded polling for a condition another task makes true."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - bounded polling of another task's state
            await asyncio.sleep(0.005)


async def collect(call: AudioSocketCall) -> list[Frame]:
    return [frame async for frame in call.frames()]


def trace_frames(case: str, direction: str = "in") -> list[Frame]:
    decoder = FrameDecoder()
    decoder.receive_data((TRACES_DIR / f"{case}.audiosocket.{direction}.bin").read_bytes())
    decoder.receive_data(b"")
    frames = []
    while (frame := decoder.next_frame()) is not None:
        frames.append(frame)
    return frames


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes; a reset counts as closed."""
    received = b""
    try:
        async with asyncio.timeout(WAIT):
            while chunk := await reader.read(65536):
                received += chunk
    except ConnectionResetError:
        pass
    return received


# --- the recorded cases, played by the simulator's AudioSocket() ------------------------------


async def test_audio_case_server_plays_2s_tone_and_hangs_up_client_returns_0_and_heard_it() -> None:
    trace_audio = [f.payload for f in trace_frames("audiosocket-audio")[1:]]
    received: list[Frame] = []
    played: list[bool] = []
    finished = asyncio.Event()

    async def handler(call: AudioSocketCall) -> None:
        reading = asyncio.create_task(collect(call))
        played.append(await call.play(tone(440, 2.0)))
        await call.hangup()
        received.extend(await reading)
        finished.set()

    caller = CallerAudio()
    for payload in trace_audio:
        caller.say(payload)
    async with serving(handler) as server:
        result = await run_audiosocket(HOST, server.port, CALL_ID, caller)
        await wait_until(finished.is_set)

    assert result == 0
    assert played == [True]
    assert bytes(caller.heard) == tone(440, 2.0)
    assert caller.frames_heard == 100
    assert received
    assert {f.kind for f in received} == {Kind.AUDIO}
    assert [f.payload for f in received] == trace_audio[: len(received)]


async def test_server_close_case_after_1s_prompt_client_returns_0_and_heard_50_frames() -> None:
    async def handler(call: AudioSocketCall) -> None:
        await call.play(tone(440, 1.0))
        await call.close()

    caller = CallerAudio()
    async with serving(handler) as server:
        result = await run_audiosocket(HOST, server.port, CALL_ID, caller)

    assert result == 0
    assert caller.frames_heard == 50
    assert bytes(caller.heard) == tone(440, 1.0)


async def test_caller_hangup_case_server_sees_eof_and_client_returns_minus_1() -> None:
    seen: dict[str, object] = {}

    async def handler(call: AudioSocketCall) -> None:
        frames = await collect(call)
        seen.update(frames=len(frames), hung_up=call.caller_hung_up, closed=call.closed)

    caller = CallerAudio(tone(300, 5.0))
    hangup = asyncio.Event()
    async with serving(handler) as server:
        client = asyncio.create_task(
            run_audiosocket(HOST, server.port, CALL_ID, caller, hangup=hangup)
        )
        await wait_until(lambda: caller.frames_sent >= 10)
        hangup.set()
        result = await asyncio.wait_for(client, WAIT)
        await wait_until(lambda: bool(seen))

    assert result == -1
    assert seen["hung_up"] is True
    assert seen["closed"] is True
    assert isinstance(seen["frames"], int)
    assert seen["frames"] >= 10


async def test_dtmf_case_handler_receives_digits_and_voice_pauses_while_a_key_is_down() -> None:
    received: list[Frame] = []

    async def handler(call: AudioSocketCall) -> None:
        async for frame in call.frames():
            received.append(frame)
            if frame.kind is Kind.DTMF and frame_digit(frame) == "7":
                break
        await call.hangup()

    caller = CallerAudio()
    caller.press("5", at=0.1, duration=0.2)
    caller.press("7", at=0.5, duration=0.2)
    async with serving(handler) as server:
        result = await run_audiosocket(HOST, server.port, CALL_ID, caller)

    assert result == 0
    assert caller.digits_sent == ["5", "7"]
    kinds = [f.kind for f in received]
    # 20 ms ticks: voice at ticks 0-4, digit 5 over ticks 5-14 (sent when it ends), voice at
    # ticks 15-24, digit 7 over ticks 25-34: no voice frame while a key is down.
    assert kinds == [Kind.AUDIO] * 5 + [Kind.DTMF] + [Kind.AUDIO] * 10 + [Kind.DTMF]
    assert [frame_digit(f) for f in received if f.kind is Kind.DTMF] == ["5", "7"]
    assert all(f.payload == bytes(FRAME_BYTES) for f in received if f.kind is Kind.AUDIO)


async def test_the_server_cannot_send_dtmf_so_asterisk_never_resets_the_connection() -> None:
    outcome: list[object] = []

    async def handler(call: AudioSocketCall) -> None:
        try:
            await call.send(Kind.DTMF, b"1")
        except AudioSocketForbiddenKind as err:
            outcome.append(err)
        outcome.append(await call.play(tone(440, 0.1)))
        await call.hangup()

    caller = CallerAudio()
    async with serving(handler) as server:
        result = await run_audiosocket(HOST, server.port, CALL_ID, caller)

    assert result == 0
    assert isinstance(outcome[0], AudioSocketForbiddenKind)
    assert outcome[1] is True
    assert bytes(caller.heard) == tone(440, 0.1)


async def test_bad_kind_case_simulated_asterisk_resets_and_returns_minus_1() -> None:
    server_saw: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def bad_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readexactly(19)
            writer.write(b"\x03\x00\x011")  # the frame of audiosocket-bad-kind.out.bin
            await writer.drain()
            while await reader.read(65536):
                pass
            server_saw.set_result("eof")
        except ConnectionResetError:
            server_saw.set_result("reset")
        finally:
            writer.close()

    server = await asyncio.start_server(bad_server, HOST, 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        result = await run_audiosocket(HOST, port, CALL_ID, CallerAudio())
        seen = await asyncio.wait_for(server_saw, WAIT)

    assert (
        TRACES_DIR / "audiosocket-bad-kind.audiosocket.out.bin"
    ).read_bytes() == b"\x03\x00\x011"
    assert result == -1
    assert seen == "reset"


async def test_client_gives_up_with_minus_1_after_2s_of_nothing_either_way() -> None:
    async def handler(call: AudioSocketCall) -> None:
        await collect(call)

    from asterisk_sim.clock import SimClock

    caller = CallerAudio(transmit_silence=False)
    async with serving(handler) as server:
        result = await run_audiosocket(
            HOST, server.port, CALL_ID, caller, clock=SimClock(time_scale=0.05)
        )

    assert result == -1
    assert caller.frames_sent == 0


async def test_a_connection_refused_is_minus_1() -> None:
    server = await asyncio.start_server(lambda r, w: None, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()

    assert await run_audiosocket(HOST, port, CALL_ID, CallerAudio()) == -1


# --- routing by UUID ------------------------------------------------------------------------


async def test_given_an_expected_uuid_when_asterisk_connects_then_the_future_gets_the_call() -> (
    None
):
    caller = CallerAudio()
    async with serving() as server:
        arrival = server.expect(CALL_ID)
        assert server.exec_argument(CALL_ID) == f"{CALL_ID},{HOST}:{server.port}"
        client = asyncio.create_task(run_audiosocket(HOST, server.port, CALL_ID, caller))
        call = await asyncio.wait_for(arrival, WAIT)
        assert call.call_id == CALL_ID
        await call.play(tone(440, 0.1))
        await call.hangup()
        result = await asyncio.wait_for(client, WAIT)

    assert result == 0
    assert bytes(caller.heard) == tone(440, 0.1)


async def test_an_unknown_uuid_is_dropped_without_reaching_anyone() -> None:
    caller = CallerAudio()
    async with serving() as server:
        arrival = server.expect(CALL_ID)
        result = await run_audiosocket(HOST, server.port, OTHER_ID, caller)
        assert not arrival.done()
        arrival.cancel()

    assert result == 0
    assert caller.heard == b""


async def test_a_withdrawn_expectation_drops_the_late_connection() -> None:
    async with serving() as server:
        server.expect(CALL_ID).cancel()
        result = await run_audiosocket(HOST, server.port, CALL_ID, CallerAudio())
        again = server.expect(CALL_ID)  # the uuid can be registered again
        again.cancel()

    assert result == 0


# --- robustness -----------------------------------------------------------------------------


async def test_garbage_clients_are_closed_without_disturbing_a_concurrent_good_call() -> None:
    errors: list[str | None] = []

    async def handler(call: AudioSocketCall) -> None:
        if call.call_id == CALL_ID:
            await call.play(tone(440, 0.5))
            await call.hangup()
        else:
            await collect(call)
            errors.append(call.error)

    caller = CallerAudio()
    async with serving(handler) as server:
        good = asyncio.create_task(run_audiosocket(HOST, server.port, CALL_ID, caller))
        await wait_until(lambda: caller.frames_heard >= 2)

        r1, w1 = await asyncio.open_connection(HOST, server.port)
        w1.write(b"\x99garbage before any uuid")
        r2, w2 = await asyncio.open_connection(HOST, server.port)
        w2.write(uuid_frame(OTHER_ID) + audio_frame(bytes(FRAME_BYTES)) + b"\x42\x00\x00")
        r3, w3 = await asyncio.open_connection(HOST, server.port)
        w3.write(audio_frame(bytes(FRAME_BYTES)))  # audio where the UUID must come first

        closed = await asyncio.gather(*(read_until_closed(r) for r in (r1, r2, r3)))
        for writer in (w1, w2, w3):
            writer.close()
        result = await asyncio.wait_for(good, WAIT)
        await wait_until(lambda: bool(errors))

    assert closed == [b"", b"", b""]
    assert result == 0
    assert bytes(caller.heard) == tone(440, 0.5)
    assert errors[0] is not None
    assert "unknown AudioSocket kind 0x42" in errors[0]


async def test_a_connection_without_a_uuid_frame_in_time_is_closed() -> None:
    calls: list[AudioSocketCall] = []

    async def handler(call: AudioSocketCall) -> None:
        calls.append(call)

    async with serving(handler, first_frame_timeout=0.1) as server:
        reader, writer = await asyncio.open_connection(HOST, server.port)
        received = await read_until_closed(reader)
        writer.close()

    assert received == b""
    assert calls == []


async def test_a_call_with_nothing_received_for_idle_timeout_is_cut() -> None:
    errors: list[str | None] = []

    async def handler(call: AudioSocketCall) -> None:
        await collect(call)
        errors.append(call.error)

    async with serving(handler, idle_timeout=0.1) as server:
        reader, writer = await asyncio.open_connection(HOST, server.port)
        writer.write(uuid_frame(CALL_ID))
        await read_until_closed(reader)
        writer.close()
        await wait_until(lambda: bool(errors))

    assert errors[0] is not None
    assert "nothing received" in errors[0]


async def test_given_a_slow_consumer_then_the_oldest_audio_is_dropped_and_dtmf_kept() -> None:
    audio = [audio_frame(bytes([n]) * FRAME_BYTES) for n in range(12)]
    taken: list[Frame] = []
    dropped: list[int] = []

    async def handler(call: AudioSocketCall) -> None:
        await wait_until(lambda: call.closed)  # everything sent has been read from the socket
        taken.extend(await collect(call))
        dropped.append(call.dropped_frames)

    async with serving(handler, max_queued_frames=4) as server:
        reader, writer = await asyncio.open_connection(HOST, server.port)
        writer.write(uuid_frame(CALL_ID) + b"".join(audio[:10]) + dtmf_frame("5"))
        writer.write(b"".join(audio[10:]))
        writer.write_eof()
        await read_until_closed(reader)
        writer.close()
        await wait_until(lambda: bool(dropped))

    assert [f.kind for f in taken] == [Kind.AUDIO, Kind.DTMF, Kind.AUDIO, Kind.AUDIO]
    assert [f.payload[0] for f in taken if f.kind is Kind.AUDIO] == [9, 10, 11]
    assert dropped == [9]


async def test_barge_in_stops_the_prompt_within_the_play_call() -> None:
    outcome: list[bool] = []

    async def handler(call: AudioSocketCall) -> None:
        stop = asyncio.Event()

        async def watch() -> None:
            async for frame in call.frames():
                if frame.kind is Kind.DTMF:
                    stop.set()
                    return

        watcher = asyncio.create_task(watch())
        outcome.append(await call.play(tone(440, 2.0), stop=stop))
        await call.hangup()
        await watcher

    caller = CallerAudio()
    caller.press("1", at=0.1, duration=0.1)
    async with serving(handler) as server:
        result = await run_audiosocket(HOST, server.port, CALL_ID, caller)

    assert result == 0
    assert outcome == [False]
    assert 0 < caller.frames_heard < 100
    assert bytes(caller.heard) == tone(440, 2.0)[: len(caller.heard)]


async def test_closing_the_server_drops_open_calls() -> None:
    caller = CallerAudio()
    started = asyncio.Event()

    async def handler(call: AudioSocketCall) -> None:
        started.set()
        await collect(call)

    server = AudioSocketServer(handler, host=HOST, port=0)
    await server.start()
    client = asyncio.create_task(run_audiosocket(HOST, server.port, CALL_ID, caller))
    await asyncio.wait_for(started.wait(), WAIT)

    await server.close()
    result = await asyncio.wait_for(client, WAIT)

    assert result in (0, -1)


# --- replaying the bytes Asterisk sent --------------------------------------------------------


@pytest.mark.parametrize("case", trace_names(".audiosocket.jsonl"))
async def test_replaying_the_recorded_asterisk_bytes_gives_the_handler_the_recorded_frames(
    case: str,
) -> None:
    recorded = trace_frames(case)
    got: list[tuple[uuid.UUID, list[Frame], bool]] = []

    async def handler(call: AudioSocketCall) -> None:
        frames = await collect(call)
        got.append((call.call_id, frames, call.caller_hung_up))

    async with serving(handler) as server:
        reader, writer = await asyncio.open_connection(HOST, server.port)
        writer.write((TRACES_DIR / f"{case}.audiosocket.in.bin").read_bytes())
        writer.write_eof()
        assert await read_until_closed(reader) == b""
        writer.close()
        await wait_until(lambda: bool(got))

    call_id, frames, hung_up = got[0]
    assert call_id == uuid.UUID(bytes=recorded[0].payload)
    assert frames == recorded[1:]
    assert hung_up is True


async def test_replaying_a_recorded_stream_in_small_writes_gives_the_same_frames() -> None:
    data = (TRACES_DIR / "audiosocket-dtmf.audiosocket.in.bin").read_bytes()
    got: list[list[Frame]] = []

    async def handler(call: AudioSocketCall) -> None:
        got.append(await collect(call))

    async with serving(handler) as server:
        reader, writer = await asyncio.open_connection(HOST, server.port)
        for start in range(0, len(data), 97):
            writer.write(data[start : start + 97])
            await writer.drain()
        writer.write_eof()
        await read_until_closed(reader)
        writer.close()
        await wait_until(lambda: bool(got))

    assert got[0] == trace_frames("audiosocket-dtmf")[1:]


def test_the_silence_helper_is_what_transmit_silence_sends() -> None:
    assert split_pcm(silence(0.04)) == [bytes(FRAME_BYTES)] * 2
    assert hangup_frame() == (TRACES_DIR / "audiosocket-dtmf.audiosocket.out.bin").read_bytes()
