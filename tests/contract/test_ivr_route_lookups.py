"""IVR lookups through the simulator: ticket status, knowledge-base answers, HTTP webhooks.

Webhooks are served by a real aiohttp server on 127.0.0.1 (port 0) that answers, hangs or
returns garbage on purpose.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from asterisk_sim.scripts import HangUp, Pause, Press, WaitForPrompt
from asterisk_sim.simulator import AsteriskSimulator
from ivr.adapters.ivr_route import keypad_hint
from ivr.adapters.lookups import CALL_ID_HEADER, InMemoryKnowledgeBase, InMemoryTicketDesk
from ivr.domain.flow import LookupKind, SpeechStep, StepId
from ivr.domain.path import LookupAnswered, LookupOutcome, Outcome, SpeechHeard
from tests.contract.test_ivr_route import CALLER, Rig, flow_from, prompt_cache, rig, shipped

__all__ = ["prompt_cache", "rig"]  # fixtures, imported for pytest

pytestmark = pytest.mark.timeout(60)


@dataclass
class Webhooks:
    """A webhook server whose endpoints misbehave in chosen ways."""

    base: str = ""
    requests: list[tuple[str, dict[str, str], str]] = field(default_factory=list)
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        body = await request.json()
        self.requests.append((name, body, request.headers.get(CALL_ID_HEADER, "")))
        if name == "ok":
            return web.json_response({"name": "Alice", "balance": 12.5, "gold": True, "x": [1]})
        if name == "missing":
            return web.json_response({"found": False})
        if name == "notfound":
            return web.Response(status=404)
        if name == "error":
            return web.Response(status=500, text="boom")
        if name == "garbage":
            return web.Response(text="<html>not json", content_type="text/html")
        if name == "list":
            return web.json_response([1, 2, 3])
        # "slow" and "gate": answer only when released (the test releases at teardown)
        self.entered.set()
        await self.release.wait()
        return web.json_response({"name": "Late"})


@pytest.fixture
async def webhooks() -> AsyncIterator[Webhooks]:
    hooks = Webhooks()
    app = web.Application()
    app.router.add_post("/hook/{name}", hooks.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    hooks.base = f"http://127.0.0.1:{port}/hook"
    try:
        yield hooks
    finally:
        hooks.release.set()
        await runner.cleanup()


def webhook_flow(url: str, timeout_ms: int = 1000) -> str:
    return f"""
name: webhook-test
start: ask
prompts:
  hello: "Hello {{crm.name}}, your balance is {{crm.balance}}."
steps:
  ask:
    type: lookup
    kind: webhook
    url: "{url}"
    params: {{caller: "{{caller}}", reason: billing}}
    timeout_ms: {timeout_ms}
    result: crm
    next: greet
    on_not_found: unknown
    on_failure: failed
  greet: {{type: play, prompts: [hello], next: bye}}
  unknown: {{type: hangup, prompt: digits/2}}
  failed: {{type: hangup, prompt: digits/3}}
  bye: {{type: hangup}}
"""


async def test_given_a_webhook_that_answers_then_its_fields_fill_the_next_prompt(
    rig: Rig, webhooks: Webhooks
) -> None:
    result = await rig.call(flow_from(webhook_flow(webhooks.url("ok"))), [])

    answered = result.of(LookupAnswered)[0]
    assert (answered.kind, answered.outcome) == (LookupKind.WEBHOOK, LookupOutcome.OK)
    assert result.steps == ["ask", "greet", "bye"]
    assert rig.played(result, "Hello Alice, your balance is 12.5.")
    _, body, call_id = webhooks.requests[0]
    assert body == {"caller": CALLER, "reason": "billing"}
    assert call_id == result.ended.call_id


@pytest.mark.parametrize(
    ("endpoint", "outcome", "reason", "branch"),
    [
        ("slow", LookupOutcome.FAILED, "timeout", "failed"),
        ("garbage", LookupOutcome.FAILED, "bad-response", "failed"),
        ("list", LookupOutcome.FAILED, "bad-response", "failed"),
        ("error", LookupOutcome.FAILED, "error", "failed"),
        ("missing", LookupOutcome.NOT_FOUND, "", "unknown"),
        ("notfound", LookupOutcome.NOT_FOUND, "", "unknown"),
    ],
)
async def test_given_a_webhook_that_misbehaves_then_the_defined_branch_is_taken(
    rig: Rig,
    webhooks: Webhooks,
    endpoint: str,
    outcome: LookupOutcome,
    reason: str,
    branch: str,
) -> None:
    result = await rig.call(flow_from(webhook_flow(webhooks.url(endpoint), timeout_ms=300)), [])

    answered = result.of(LookupAnswered)[0]
    assert (answered.outcome, answered.reason) == (outcome, reason)
    assert result.steps == ["ask", branch]
    assert result.ended.outcome is Outcome.HUNG_UP


async def test_given_an_unreachable_webhook_then_the_failure_branch_is_taken(rig: Rig) -> None:
    result = await rig.call(flow_from(webhook_flow("http://127.0.0.1:9/hook")), [])

    assert result.of(LookupAnswered)[0].reason == "error"
    assert result.steps == ["ask", "failed"]


async def test_given_a_caller_who_hangs_up_during_a_lookup_then_the_path_ends_caller_hung_up(
    rig: Rig, webhooks: Webhooks
) -> None:
    def release_on_hangup(sim: AsteriskSimulator) -> None:
        def listener(headers: list[tuple[str, str]]) -> None:
            if dict(headers).get("Event") == "Hangup":
                webhooks.release.set()

        sim.pbx.bus.subscribe(listener)

    rig.on_sim = release_on_hangup
    flow = flow_from(
        webhook_flow(webhooks.url("gate"), timeout_ms=20_000)
        .replace("start: ask", "start: hello")
        .replace("steps:\n", "steps:\n  hello: {type: play, prompts: [digits/1], next: ask}\n")
    )

    result = await rig.call(flow, [WaitForPrompt("digits/1"), Pause(2.0), HangUp()])

    assert webhooks.entered.is_set()
    assert result.steps[:3] == ["hello", "ask", "greet"]
    assert result.of(LookupAnswered)[0].outcome is LookupOutcome.OK
    assert result.ended.outcome is Outcome.CALLER_HUNG_UP


# --- ticket status and knowledge base in the shipped support flow ---------------------------


async def test_given_a_known_ticket_when_caller_keys_it_then_its_status_is_read_back(
    rig: Rig,
) -> None:
    rig.tickets = InMemoryTicketDesk({"42": {"status": "waiting for parts"}})
    result = await rig.call(
        shipped("support"),
        [
            WaitForPrompt("GET DATA"),
            Press("1"),  # keypad for "ticket" (no speech port configured)
            WaitForPrompt("GET DATA"),
            Press("42#"),
            WaitForPrompt("GET DATA"),
            Press("2"),
        ],
    )

    assert result.of(SpeechHeard)[0].text == "ticket"
    ask_need = shipped("support").steps[StepId("ask-need")]
    assert isinstance(ask_need, SpeechStep)
    words = tuple(ask_need.options)
    assert rig.played(result, keypad_hint(words, "en"))
    answered = result.of(LookupAnswered)[0]
    assert (answered.kind, answered.outcome) == (LookupKind.TICKET_STATUS, LookupOutcome.OK)
    assert rig.played(result, "Ticket 42 is waiting for parts.")
    assert result.steps[-1] == "goodbye"
    assert result.ended.outcome is Outcome.HUNG_UP


async def test_given_an_unknown_ticket_then_the_caller_hears_so(rig: Rig) -> None:
    result = await rig.call(
        shipped("support"),
        [WaitForPrompt("GET DATA"), Press("1"), WaitForPrompt("GET DATA"), Press("77#")],
    )

    assert result.of(LookupAnswered)[0].outcome is LookupOutcome.NOT_FOUND
    assert "ticket-unknown" in result.steps
    assert rig.played(result, "I could not find that ticket.")


KB_FLOW = """
name: kb-test
start: question
prompts:
  intro: "Here is what I found."
steps:
  question: {type: set, variables: {question: "what are your opening hours"}, next: kb}
  kb: {type: kb_answer, question: "{question}", intro: intro, next: bye, on_failure: none}
  none: {type: hangup, prompt: digits/9}
  bye: {type: hangup}
"""


async def test_given_a_question_the_knowledge_base_answers_then_the_answer_is_read_back(
    rig: Rig,
) -> None:
    answer = "We are open Monday to Friday, from 8 AM to 6 PM."
    rig.knowledge = InMemoryKnowledgeBase({"opening hours": answer})

    result = await rig.call(flow_from(KB_FLOW), [])

    answered = result.of(LookupAnswered)[0]
    assert (answered.kind, answered.outcome) == (LookupKind.KB, LookupOutcome.OK)
    assert rig.played(result, "Here is what I found.")
    assert rig.played(result, answer)
    assert result.steps == ["question", "kb", "bye"]


async def test_given_a_question_without_answer_then_the_failure_branch_is_taken(rig: Rig) -> None:
    result = await rig.call(flow_from(KB_FLOW), [])

    assert result.of(LookupAnswered)[0].outcome is LookupOutcome.NOT_FOUND
    assert result.steps == ["question", "kb", "none"]


async def test_given_support_question_by_keypad_then_no_kb_answer_and_agent_queue(
    rig: Rig,
) -> None:
    rig.knowledge = InMemoryKnowledgeBase({"password": "Use the reset link."})
    result = await rig.call(
        shipped("support"),
        [WaitForPrompt("GET DATA"), Press("3"), WaitForPrompt("GET DATA"), Press("123#")],
    )

    assert [e.text for e in result.of(SpeechHeard)] == ["question", "123"]
    assert result.of(LookupAnswered)[0].outcome is LookupOutcome.NOT_FOUND
    assert result.steps[-2:] == ["kb-none", "agent"]
    assert result.variables["CC_QUEUE"] == "support"
    assert result.variables["CC_SKILLS"] == "support"
