"""Benchmark: AMI event ingest, panoramisk 1.4's parser vs our link's read path, on recorded bytes.

Run ``python -m bench.ami_ingest [--events N] [--repeat R]``. The input is the "in" direction
of every ``*.ami.jsonl`` trace (what Asterisk 22 sent), in its recorded read chunks, replicated
until it holds about N events (default 200 000). Each trace's banner chunk is dropped and one
banner is put at the start, and the recorded ``Event: Shutdown`` chunk is left out (both
clients close the socket on it, which would end the loopback run early).

Figures, best of R rounds (each round runs both clients in turn, so that load bursts on a
noisy machine hit both), plus the ratio of each round and their median. After every read
the events handed on are taken away, as a consumer that keeps up would (so the heap does
not grow with 200 000 kept events):

* **panoramisk** - ``panoramisk.ami_protocol.AMIProtocol.data_received`` itself (decode,
  split on ``\\r\\n\\r\\n``, ``Message.from_line``, ``handle_message``), with a stub factory
  whose ``dispatch`` appends to a list: its bare parser up to the event handler.
* **ours** - ``AmiLink.make_protocol()``: ``AmiStreamProtocol.data_received`` ->
  ``AmiDecoder`` -> ActionID routing -> ``decode_event`` (typed events) -> the bounded queue.

Both are fed the same chunks in process (no socket), then the same stream over a loopback
TCP socket (64 KiB writes). The goal is ours >= 1.0x panoramisk. No assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from panoramisk.ami_protocol import AMIProtocol

from acd.adapters.ami_link import AmiLink
from acd.protocol.ami import BANNER, AmiDecoder, AmiMessage
from tests.traces import chunks, trace_names

GOAL = 1.0
_SHUTDOWN = b"Event: Shutdown\r\n"


class _NullTransport(asyncio.Transport):
    """Accepts and discards writes; close/abort only set a flag."""

    def __init__(self) -> None:
        super().__init__()
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def abort(self) -> None:
        self._closing = True


class _StubFactory:
    """The few Manager attributes AMIProtocol touches; dispatch() just keeps the message."""

    save_stream = None
    forgetable_actions = ("ping", "login")

    def __init__(self) -> None:
        self.awaiting_actions: deque[Any] = deque()
        self.dispatched: list[Any] = []
        self.dispatch = self.dispatched.append

    def drain(self) -> int:
        """What a consumer keeping up would take; returns how many messages it took."""
        taken = len(self.dispatched)
        self.dispatched.clear()
        return taken

    def connection_lost(self, exc: object) -> None:
        pass


class _BenchAMIProtocol(AMIProtocol):  # type: ignore[misc]  # panoramisk is untyped
    """panoramisk's AMIProtocol, wired to a stub factory the way Manager.connection_made does."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.factory = self.stub
        self.encoding = "utf8"  # what panoramisk.Manager sets


def _panoramisk_protocol() -> tuple[asyncio.Protocol, Callable[[], int]]:
    proto = _BenchAMIProtocol()
    proto.stub = factory = _StubFactory()
    return proto, factory.drain


def _our_protocol() -> tuple[asyncio.Protocol, Callable[[], int]]:
    link = AmiLink("127.0.0.1", 0, "bench", "bench")  # the default bounded queue (10 000)
    queue = link.events

    def drain() -> int:
        taken = 0
        while not queue.empty():
            queue.get_nowait()
            taken += 1
        return taken

    return link.make_protocol(), drain


Factory = Callable[[], tuple[asyncio.Protocol, Callable[[], int]]]
CLIENTS: dict[str, Factory] = {
    "panoramisk 1.4": _panoramisk_protocol,
    "ours": _our_protocol,
}


def replica_chunks() -> list[bytes]:
    """One replica: every AMI trace's "in" chunks without banners or the Shutdown event."""
    out: list[bytes] = []
    for name in trace_names(".ami.jsonl"):
        parts = chunks(f"{name}.ami.jsonl", "in")
        if parts[0] != BANNER:
            raise ValueError(f"{name}: the first chunk is not the banner")
        for part in parts[1:]:
            if _SHUTDOWN in part:
                if not part.startswith(_SHUTDOWN) or part.count(b"\r\n\r\n") != 1:
                    raise ValueError(f"{name}: Shutdown is not a chunk of its own")
                continue
            out.append(part)
    return out


def count_events(data: bytes) -> int:
    decoder = AmiDecoder(expect_banner=False)
    decoder.receive_data(data)
    count = 0
    while (message := decoder.next_event()) is not None:
        if isinstance(message, AmiMessage) and message.event is not None:
            count += 1
    return count


def in_process(factory: Factory, stream: list[bytes]) -> tuple[float, int]:
    """Seconds to feed every chunk to a fresh protocol (draining after each), events handed on."""

    async def run() -> tuple[float, int]:
        proto, drain = factory()
        proto.connection_made(_NullTransport())
        feed = proto.data_received
        handed_on = 0
        gc.collect()
        start = time.perf_counter()
        for chunk in stream:
            feed(chunk)
            handed_on += drain()
        return time.perf_counter() - start, handed_on

    return asyncio.run(run())


class _Watch(asyncio.Protocol):
    """Forwards to the protocol under test, drains after each read, resolves `done` at the end."""

    def __init__(
        self, inner: asyncio.Protocol, drain: Callable[[], int], done: asyncio.Future[int]
    ) -> None:
        self.inner = inner
        self.drain = drain
        self.done = done
        self.handed_on = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)
        self.handed_on += self.drain()

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)
        if not self.done.done():
            self.done.set_result(self.handed_on + self.drain())


def over_loopback(factory: Factory, data: bytes) -> tuple[float, int]:
    """Seconds from connect to close when a loopback server writes `data` in 64 KiB writes."""

    async def run() -> tuple[float, int]:
        async def serve(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            view = memoryview(data)
            for offset in range(0, len(view), 65536):
                writer.write(view[offset : offset + 65536])
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        proto, drain = factory()
        done: asyncio.Future[int] = loop.create_future()
        gc.collect()
        start = time.perf_counter()
        await loop.create_connection(lambda: _Watch(proto, drain, done), "127.0.0.1", port)
        handed_on = await asyncio.wait_for(done, 300)
        elapsed = time.perf_counter() - start
        server.close()
        await server.wait_closed()
        return elapsed, handed_on

    return asyncio.run(run())


Runs = dict[str, list[tuple[float, int]]]


def interleaved(repeat: int, run: Callable[[Factory], tuple[float, int]]) -> Runs:
    """`repeat` rounds, each running every client once in turn (ABAB..., not AAA BBB), so a
    burst of load on a noisy machine hits both sides instead of skewing one."""
    runs: Runs = {name: [] for name in CLIENTS}
    for _ in range(repeat):
        for name, factory in CLIENTS.items():
            runs[name].append(run(factory))
    return runs


def report(title: str, runs: Runs, events: int) -> None:
    print(f"\n{title}")
    best = {name: min(results) for name, results in runs.items()}
    for name, (seconds, handed_on) in best.items():
        print(
            f"  {name:<15} {events / seconds:>10,.0f} events/s"
            f"  (best {seconds * 1000:7.0f} ms, {handed_on} events handed on)"
        )
    ours, theirs = runs["ours"], runs["panoramisk 1.4"]
    ratio = best["panoramisk 1.4"][0] / best["ours"][0]
    per_round = sorted(t / o for (o, _), (t, _) in zip(ours, theirs, strict=True))
    median = statistics.median(per_round)
    verdict = "met" if ratio >= GOAL else "NOT met"
    print(
        f"  ratio ours/panoramisk: {ratio:.2f}x best vs best (goal >= {GOAL:.1f}x: {verdict}); "
        f"per round {', '.join(f'{r:.2f}' for r in per_round)} (median {median:.2f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    one = replica_chunks()
    per_replica = count_events(b"".join(one))
    copies = max(1, -(-args.events // per_replica))
    stream = [BANNER, *(one * copies)]
    data = b"".join(stream)
    events = per_replica * copies
    print(
        f"input: {len(trace_names('.ami.jsonl'))} AMI traces x {copies} = {events} events, "
        f"{len(stream)} recorded chunks, {len(data) / 1e6:.1f} MB; best of {args.repeat} rounds"
    )
    report(
        "in process, recorded chunks",
        interleaved(args.repeat, lambda f: in_process(f, stream)),
        events,
    )
    report(
        "loopback TCP, 64 KiB writes",
        interleaved(args.repeat, lambda f: over_loopback(f, data)),
        events,
    )


if __name__ == "__main__":
    main()
