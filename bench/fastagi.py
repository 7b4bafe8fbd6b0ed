"""FastAGI server load benchmark: many concurrent raw sessions doing NOOP round trips.

Run ``python -m bench.fastagi`` (``--help`` for options). It starts a FastAgiServer in this
process, opens ``--sessions`` raw client connections at once that play Asterisk (header block
from :func:`encode_environment`, commands read with :class:`AgiCommandDecoder`, replies from
:func:`format_reply`, the closing ``HANGUP`` line), and lets each session's handler do
``--round-trips`` NOOP commands. Latency is measured in the handler, from writing the command to
reading its reply. Server and clients share one event loop and one CPU, so the figure is a
lower bound for the server alone. Nothing is asserted; the goal is printed next to the result.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from ivr.adapters.fastagi_server import AgiSession, FastAgiServer
from ivr.protocol.agi import (
    HANGUP_LINE,
    AgiCommandDecoder,
    Noop,
    encode_environment,
    format_reply,
)

GOAL_ROUND_TRIPS_PER_S = 5000.0
REPLY = format_reply(0)


def _environment(index: int) -> bytes:
    return encode_environment(
        [
            ("agi_network", "yes"),
            ("agi_network_script", "bench?run=1"),
            ("agi_request", "agi://127.0.0.1/bench?run=1"),
            ("agi_channel", f"Local/bench@load-{index:08x};2"),
            ("agi_language", "en"),
            ("agi_type", "Local"),
            ("agi_uniqueid", f"1795330000.{index}"),
            ("agi_version", "22.10.1"),
            ("agi_callerid", f"+1555{index:07d}"),
            ("agi_calleridname", "Bench"),
            ("agi_context", "load"),
            ("agi_extension", "bench"),
            ("agi_priority", "1"),
            ("agi_accountcode", ""),
        ]
    )


async def _asterisk_client(port: int, index: int, ready: asyncio.Event, timeout: float) -> int:
    """One fake Asterisk channel: headers, a 200 reply per command, HANGUP at script end."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answered = 0
    try:
        await ready.wait()
        writer.write(_environment(index))
        decoder = AgiCommandDecoder()
        async with asyncio.timeout(timeout):
            while data := await reader.read(65536):
                decoder.receive_data(data)
                while decoder.next_command() is not None:
                    writer.write(REPLY)
                    answered += 1
            writer.write(HANGUP_LINE)  # the script half-closed: Asterisk's last line
            await writer.drain()
    finally:
        writer.close()
    return answered


async def run(sessions: int, round_trips: int, timeout: float) -> float:
    latencies: list[float] = []
    finished = 0
    first_command: list[float] = []
    last_reply = 0.0

    async def handler(session: AgiSession) -> None:
        nonlocal finished, last_reply
        now = time.perf_counter()
        if not first_command:
            first_command.append(now)
        for _ in range(round_trips):
            start = time.perf_counter()
            await session.send(Noop())
            latencies.append(time.perf_counter() - start)
        finished += 1
        last_reply = time.perf_counter()

    server = FastAgiServer({"bench": handler}, port=0, backlog=4096, header_timeout=timeout)
    await server.start()
    try:
        ready = asyncio.Event()
        clients = [
            asyncio.create_task(_asterisk_client(server.port, i, ready, timeout))
            for i in range(sessions)
        ]
        await asyncio.sleep(0)  # let every client start connecting
        connect_start = time.perf_counter()
        ready.set()
        answered = await asyncio.gather(*clients)
        async with asyncio.timeout(timeout):  # let the sessions see Asterisk's close
            while server.active_sessions:  # noqa: ASYNC110 - nothing signals this count
                await asyncio.sleep(0.01)
    finally:
        await server.close()

    total = len(latencies)
    elapsed = last_reply - first_command[0] if first_command else float("nan")
    rate = total / elapsed if elapsed > 0 else 0.0
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000 if ordered else float("nan")
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000 if ordered else 0.0
    verdict = "met" if rate >= GOAL_ROUND_TRIPS_PER_S else "NOT met"
    print(f"FastAGI server bench (Python {sys.version.split()[0]}, one event loop)")
    print(f"  sessions:              {sessions} concurrent, {finished} completed")
    print(f"  round trips:           {total} NOOP ({round_trips} per session)")
    print(f"  answered by clients:   {sum(answered)}")
    print(
        f"  first to last reply:   {elapsed:.2f} s (setup {first_command[0] - connect_start:.2f} s)"
    )
    print(f"  throughput:            {rate:,.0f} round trips/s")
    print(f"  latency p50 / p99:     {p50:.2f} ms / {p99:.2f} ms")
    print(f"  goal (baseline):       >= {GOAL_ROUND_TRIPS_PER_S:,.0f} round trips/s -> {verdict}")
    return rate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--round-trips", type=int, default=20, help="NOOP commands per session")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-client bound, seconds")
    args = parser.parse_args(argv)
    asyncio.run(run(args.sessions, args.round_trips, args.timeout))


if __name__ == "__main__":
    main()
