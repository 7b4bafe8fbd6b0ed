"""The IVR path on a real Redis Stream, its JSON form, and the IVR service's flows and routes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from asterisk_sim.scripts import CallerScript, Press, WaitForPrompt
from asterisk_sim.simulator import AsteriskSimulator
from ivr.adapters.fastagi_server import FastAgiServer
from ivr.adapters.path_sink import (
    IVR_EVENTS_STREAM,
    InMemoryPathSink,
    PathEventDecodeError,
    RedisPathSink,
    decode_path_event,
    encode_path_event,
)
from ivr.domain.call import CallId
from ivr.domain.flow import LookupKind, StepId, StepType
from ivr.domain.flow_check import FlowInvalidError
from ivr.domain.path import (
    CallbackRequested,
    DigitsEntered,
    InputRejected,
    IvrEnded,
    IvrStarted,
    LookupAnswered,
    LookupOutcome,
    Outcome,
    PathEvent,
    Rejection,
    SpeechHeard,
    StepEntered,
    SurveyAnswered,
    VariablesSet,
    VoicemailLeft,
)
from ivr.service import FLOWS_DIR, IvrService, IvrSettings, load_flows
from tests.contract.test_ivr_route import (
    TIME_SCALE,
    WAIT,
    dialplan,
    prompt_cache,
    rig,
)

__all__ = ["prompt_cache", "rig"]  # fixtures, imported for pytest

pytestmark = pytest.mark.timeout(60)

AT = datetime(2026, 3, 3, 9, 0, 0, 123456, tzinfo=UTC)
CALL = CallId("1795331282.0")

EXAMPLES: list[PathEvent] = [
    IvrStarted(CALL, AT, "main", "+15551230001", "en"),
    StepEntered(CALL, AT, StepId("menu"), StepType.MENU),
    DigitsEntered(CALL, AT, StepId("menu"), "", True),
    SpeechHeard(CALL, AT, StepId("ask"), "ticket status", 0.875),
    InputRejected(CALL, AT, StepId("menu"), Rejection.NO_INPUT, 2, True),
    VariablesSet(CALL, AT, StepId("set"), (("language", "fr"), ("skills", "a,b"))),
    LookupAnswered(CALL, AT, StepId("l"), LookupKind.WEBHOOK, LookupOutcome.FAILED, "timeout"),
    CallbackRequested(CALL, AT, StepId("cb"), "0612345678"),
    VoicemailLeft(CALL, AT, StepId("vm"), "/x/1.wav", 3.5, "Voicemail from é", "+1", "fr"),
    SurveyAnswered(CALL, AT, StepId("s"), "satisfaction", None),
    SurveyAnswered(CALL, AT, StepId("s"), "resolved", 1),
    IvrEnded(CALL, AT, StepId("q"), Outcome.QUEUED, 1234, "support"),
]


# --- the JSON form ---------------------------------------------------------------------------


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_every_path_event_survives_its_json_form(event: PathEvent) -> None:
    assert decode_path_event(encode_path_event(event)) == event


def test_the_json_form_is_flat_and_readable() -> None:
    text = encode_path_event(EXAMPLES[5])
    assert text == (
        '{"type":"VariablesSet","call_id":"1795331282.0","at":"2026-03-03T09:00:00.123456+00:00",'
        '"step":"set","values":[["language","fr"],["skills","a,b"]]}'
    )


@settings(max_examples=50, deadline=None)
@given(text=st.text(), confidence=st.floats(0, 1), digits=st.text("0123456789*#", max_size=20))
def test_any_caller_input_survives_the_json_form(text: str, confidence: float, digits: str) -> None:
    for event in (
        SpeechHeard(CALL, AT, StepId("s"), text, confidence),
        DigitsEntered(CALL, AT, StepId("s"), digits, False),
    ):
        assert decode_path_event(encode_path_event(event)) == event


@pytest.mark.parametrize(
    "text",
    [
        b"not json",
        "[1, 2]",
        '{"type": "NoSuchEvent"}',
        '{"type": "StepEntered", "call_id": "1", "at": 5, "step": "x", "step_type": "menu"}',
        '{"type": "StepEntered", "call_id": "1", "at": "2026-03-03T09:00:00+00:00", "step": "x"}',
        '{"type": "StepEntered", "call_id": 1, "at": "2026-03-03T09:00:00+00:00", "step": "x",'
        ' "step_type": "menu"}',
        '{"type": "StepEntered", "call_id": "1", "at": "2026-03-03T09:00:00+00:00", "step": "x",'
        ' "step_type": "no-such-type"}',
    ],
)
def test_a_bad_entry_is_a_decode_error(text: str | bytes) -> None:
    with pytest.raises(PathEventDecodeError):
        decode_path_event(text)


# --- the Redis Stream ------------------------------------------------------------------------


async def stream_entries(client: aioredis.Redis) -> list[dict[bytes, bytes]]:
    entries: Any = await client.xrange(IVR_EVENTS_STREAM)
    return [fields for _, fields in entries]


async def test_given_path_events_when_published_then_they_are_on_the_stream_in_order(
    redis_url: str,
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        sink = RedisPathSink(client)
        for event in EXAMPLES:
            await sink.publish(event)

        entries = await stream_entries(client)
    finally:
        await client.aclose()

    assert [decode_path_event(fields[b"json"]) for fields in entries] == EXAMPLES
    assert [fields[b"type"].decode() for fields in entries] == [type(e).__name__ for e in EXAMPLES]
    assert {fields[b"call_id"] for fields in entries} == {CALL.encode()}
    assert sink.dropped == 0


async def test_given_a_small_maxlen_then_the_stream_is_trimmed(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        sink = RedisPathSink(client, stream="test:ivr:trim", maxlen=10)
        for _ in range(500):
            await sink.publish(EXAMPLES[1])
        length = await client.xlen("test:ivr:trim")
    finally:
        await client.aclose()

    assert length < 500  # MAXLEN ~ trims whole radix-tree nodes, so a little over 10 is fine


async def test_given_redis_is_down_then_publishing_logs_and_counts_instead_of_failing() -> None:
    client = aioredis.Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=1)
    try:
        sink = RedisPathSink(client, timeout=2.0)
        await sink.publish(EXAMPLES[0])
    finally:
        await client.aclose()

    assert sink.dropped == 1


# --- the service -----------------------------------------------------------------------------


def write_flow(directory: Path, name: str, body: str = "") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    text = body or f"name: {name}\nstart: bye\nsteps:\n  bye: {{type: hangup, prompt: beep}}\n"
    (directory / f"{name}.yaml").write_text(text, encoding="utf-8")


def test_given_the_shipped_flows_then_the_service_serves_each_under_ivr_slash_name(
    tmp_path: Path,
) -> None:
    service = IvrService(IvrSettings(prompt_cache_dir=tmp_path), path_sink=InMemoryPathSink())
    service.load()

    assert set(service.routes()) == {
        "ivr",
        "ivr/main",
        "ivr/support",
        "ivr/support-ko",
        "ivr/sales",
        "ivr/after_hours",
        "ivr/survey",
    }
    assert service.flow_for("ivr/main") is service.flows["main"]


def test_given_broken_flows_then_load_refuses_with_every_problem(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    write_flow(flows, "one")
    write_flow(flows, "two", "name: one\nstart: bye\nsteps:\n  bye: {type: hangup}\n")
    write_flow(flows, "three", "name: three\nstart: nowhere\nsteps:\n  bye: {type: hangup}\n")
    service = IvrService(IvrSettings(flows_dir=flows), path_sink=InMemoryPathSink())

    with pytest.raises(FlowInvalidError) as caught:
        service.load()

    problems = [str(p) for p in caught.value.problems]
    assert any("three.yaml" in p and "nowhere" in p for p in problems)
    assert any("two.yaml:1: flow name 'one' is also in" in p for p in problems)
    assert service.flows == {}


def test_given_an_empty_flows_directory_then_it_is_a_problem(tmp_path: Path) -> None:
    _, problems = load_flows(tmp_path)
    assert [p.message for p in problems] == ["no flow files (*.yaml) in this directory"]


def test_given_a_reload_with_a_mistake_then_the_flows_in_use_are_kept(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    write_flow(flows, "one")
    service = IvrService(IvrSettings(flows_dir=flows), path_sink=InMemoryPathSink())
    service.load()
    before = service.flows["one"]

    write_flow(flows, "one", "name: one\nstart: bye\nsteps:\n  bye: {type: nonsense}\n")
    problems = service.reload()

    assert problems
    assert service.flows["one"] is before
    write_flow(flows, "one")
    write_flow(flows, "two")
    assert service.reload() == []
    assert set(service.flows) == {"one", "two"}


async def test_given_a_flow_added_by_reload_then_calls_reach_it_through_the_ivr_prefix(
    tmp_path: Path,
) -> None:
    flows = tmp_path / "flows"
    write_flow(flows, "one")
    sink = InMemoryPathSink()
    service = IvrService(IvrSettings(flows_dir=flows, prompt_cache_dir=tmp_path), path_sink=sink)
    service.load()
    server = FastAgiServer(service.routes(), port=0)  # routes taken before the reload
    await server.start()
    write_flow(flows, "late")
    assert service.reload() == []
    sim = AsteriskSimulator(dialplan(server.port), time_scale=TIME_SCALE)
    await sim.start()
    try:
        late = await sim.originate_call("x", "ivr", variables=[("FLOW", "late")])
        unknown = await sim.originate_call("x", "ivr", variables=[("FLOW", "nope")])
        await late.finished(WAIT)
        await unknown.finished(WAIT)
        await sink.wait_for(lambda e: isinstance(e, IvrEnded), timeout=WAIT)
    finally:
        await sim.close()
        await server.close()
        await service.close()

    started = [e for e in sink.events if isinstance(e, IvrStarted)]
    assert [e.flow for e in started] == ["late"]
    assert late.variable("CC_IVR_DONE") == "1"
    assert unknown.variable("CC_IVR_DONE") is None
    assert unknown.variable("AGISTATUS") == "SUCCESS"  # no command: the dialplan goes on


async def test_given_a_call_through_the_service_then_its_path_is_on_the_redis_stream(
    tmp_path: Path, redis_url: str, prompt_cache: Path
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    service = IvrService(
        IvrSettings(prompt_cache_dir=prompt_cache),
        path_sink=RedisPathSink(client),
        clock=lambda: datetime(2026, 3, 3, 9, 0, tzinfo=UTC),
    )
    service.load()
    server = FastAgiServer(service.routes(), port=0)
    await server.start()
    sim = AsteriskSimulator(dialplan(server.port), time_scale=TIME_SCALE)
    await sim.start()
    try:
        caller = CallerScript(
            [WaitForPrompt("GET DATA"), Press("1"), WaitForPrompt("GET DATA"), Press("2")]
        )
        call = await sim.originate_call("x", "ivr", caller, variables=[("FLOW", "main")])
        await call.finished(WAIT)
        events: list[PathEvent] = []
        async with asyncio.timeout(WAIT):
            while not events or not isinstance(events[-1], IvrEnded):
                await asyncio.sleep(0.05)  # poll the stream until the session's last event
                events = [decode_path_event(f[b"json"]) for f in await stream_entries(client)]
    finally:
        await sim.close()
        await server.close()
        await service.close()
        await client.aclose()

    assert isinstance(events[0], IvrStarted)
    assert events[0].call_id == call.linkedid
    last = events[-1]
    assert isinstance(last, IvrEnded)
    assert (last.outcome, last.destination) == (Outcome.QUEUED, "support")
    assert [e.digits for e in events if isinstance(e, DigitsEntered)] == ["1", "2"]


def test_the_shipped_flows_directory_is_the_package_one() -> None:
    assert (FLOWS_DIR / "main.yaml").is_file()
