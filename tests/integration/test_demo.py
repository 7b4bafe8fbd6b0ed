"""`callcenter demo` end to end: embedded Redis, the simulator, the node's AMI link and FastAGI."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from callcenter.config import load_settings
from callcenter.demo import DemoOptions, DemoStats, run_demo


async def test_given_the_demo_when_it_runs_then_simulated_calls_reach_fastagi_and_ami(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = load_settings(environ={})
    settings = replace(
        settings,
        agi=replace(settings.agi, port=0),
        audiosocket=replace(settings.audiosocket, port=0),
        node=replace(settings.node, lease_ttl=2.0),
    )
    stats = DemoStats()
    options = DemoOptions(calls_per_minute=240.0, seed=7, report_every=0.5)
    demo = asyncio.create_task(run_demo(settings, options, stats=stats))
    try:
        async with asyncio.timeout(60):
            while not (
                stats.completed >= 3
                and stats.monitor.events_by_name["AGIExecEnd"] >= 3
                and stats.monitor.lease_token is not None
            ):
                assert not demo.done(), demo
                await asyncio.sleep(0.1)
    finally:
        demo.cancel()
        with pytest.raises(asyncio.CancelledError):
            await demo
    out = capsys.readouterr().out
    assert "callcenter demo is running" in out
    assert "[demo] calls placed" in out
    assert stats.monitor.resyncs >= 1
    assert stats.monitor.events_by_name["Newchannel"] >= 6
