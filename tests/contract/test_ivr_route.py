"""The IVR route through the simulator: keypad menus, digits, conditions, set, hang-ups.

Each call runs ``AGI(agi://127.0.0.1:<port>/ivr/<flow>)`` on the Asterisk simulator against our
FastAGI server with the route, the real prompt renderer (espeak-ng) and an in-memory path sink.
The :class:`Rig` here is shared by the other ``test_ivr_route_*`` modules.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest

from asterisk_sim.audiosocket_client import CallerAudio
from asterisk_sim.scripts import (
    AgentScript,
    CallerScript,
    HangUp,
    Pause,
    Press,
    Step,
    WaitForPrompt,
)
from asterisk_sim.simulator import AsteriskSimulator, SimCall
from ivr.adapters.fastagi_server import FastAgiServer
from ivr.adapters.ivr_route import IvrRoute, RouteSettings, keypad_hint, normalise_number
from ivr.adapters.lookups import (
    InMemoryCallbacks,
    InMemoryCustomerDirectory,
    InMemoryKnowledgeBase,
    InMemoryTicketDesk,
    LookupRunner,
    WebhookClient,
)
from ivr.adapters.path_sink import InMemoryPathSink
from ivr.adapters.prompt_renderer import PromptRenderer
from ivr.domain.flow import Flow
from ivr.domain.flow_check import check_flow_text
from ivr.domain.path import (
    DigitsEntered,
    InputRejected,
    IvrEnded,
    IvrStarted,
    Outcome,
    PathEvent,
    Rejection,
    StepEntered,
    VariablesSet,
)
from ivr.ports import SpeechPort
from ivr.service import FLOWS_DIR, load_flows

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(
        shutil.which("espeak-ng") is None and not os.environ.get("CI"),
        reason="espeak-ng is not installed (apt-get install espeak-ng; .ci/run installs it)",
    ),
]

TIME_SCALE = 0.1  # simulated seconds run ten times faster
WAIT = 30.0  # upper bound, in real seconds, for one call
TUESDAY_10_PARIS = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)  # main.yaml's office is open
SUNDAY_NOON_PARIS = datetime(2026, 3, 8, 11, 0, tzinfo=UTC)  # closed
CALLER = "+15551230001"
E = TypeVar("E")


def flow_from(text: str) -> Flow:
    """A flow written in a test, checked like a shipped one."""
    flow, problems = check_flow_text(text, "test-flow.yaml")
    assert not problems, "\n".join(str(p) for p in problems)
    assert flow is not None
    return flow


def shipped(name: str) -> Flow:
    flows, problems = load_flows(FLOWS_DIR)
    assert not problems
    return flows[name]


@dataclass
class CallResult:
    """What one call left behind: the recorded path, the AGI commands, the channel variables."""

    path: list[PathEvent]
    commands: list[str]
    variables: dict[str, str]
    sim_call: SimCall

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.path if isinstance(e, kind)]

    @property
    def ended(self) -> IvrEnded:
        ends = self.of(IvrEnded)
        assert len(ends) == 1, self.path
        return ends[0]

    @property
    def steps(self) -> list[str]:
        return [e.step for e in self.of(StepEntered)]

    def ran(self, prefix: str) -> list[str]:
        return [c for c in self.commands if c.startswith(prefix)]


def dialplan(port: int) -> str:
    return f"""
[ivr]
exten => x,1,Answer()
 same => n,AGI(agi://127.0.0.1:{port}/ivr/${{FLOW}})
 same => n,NoOp(after the IVR: AGISTATUS=${{AGISTATUS}} CC_QUEUE=${{CC_QUEUE}})
 same => n,Hangup()

[trunk]
"""


@dataclass
class Rig:
    """The route with its in-memory ports, and a way to place one simulated call."""

    cache_dir: Path
    clock_at: datetime = TUESDAY_10_PARIS
    settings: RouteSettings = field(
        default_factory=lambda: RouteSettings(
            trunk_pattern="Local/{number}@trunk", recordings_dir="/tmp/ivr-test-voicemail"
        )
    )
    sink: InMemoryPathSink = field(default_factory=InMemoryPathSink)
    tickets: InMemoryTicketDesk = field(default_factory=InMemoryTicketDesk)
    knowledge: InMemoryKnowledgeBase = field(default_factory=InMemoryKnowledgeBase)
    customers: InMemoryCustomerDirectory = field(default_factory=InMemoryCustomerDirectory)
    callbacks: InMemoryCallbacks = field(default_factory=InMemoryCallbacks)
    speech: SpeechPort | None = None
    # Called with each simulator before its call is placed (to watch its events).
    on_sim: Callable[[AsteriskSimulator], None] | None = None

    def __post_init__(self) -> None:
        self.renderer = PromptRenderer(self.cache_dir)

    def route(self, webhooks: WebhookClient) -> IvrRoute:
        return IvrRoute(
            renderer=self.renderer,
            lookups=LookupRunner(self.tickets, self.knowledge, webhooks),
            path_sink=self.sink,
            callbacks=self.callbacks,
            customers=self.customers,
            speech=self.speech,
            clock=lambda: self.clock_at,
            settings=self.settings,
        )

    async def call(
        self,
        flow: Flow,
        steps: Sequence[Step],
        *,
        caller_id: str = CALLER,
        agents: dict[str, AgentScript] | None = None,
        audio: CallerAudio | None = None,
    ) -> CallResult:
        self.sink = InMemoryPathSink()  # simulators number calls alike: one sink per call
        webhooks = WebhookClient()
        route = self.route(webhooks)
        server = FastAgiServer({f"ivr/{flow.name}": route.handler(lambda: flow)}, port=0)
        await server.start()
        sim = AsteriskSimulator(dialplan(server.port), time_scale=TIME_SCALE)
        for exten, agent in (agents or {}).items():
            sim.add_agent(exten, agent, context="trunk")
        if self.on_sim is not None:
            self.on_sim(sim)
        await sim.start()
        try:
            call = await sim.originate_call(
                "x",
                "ivr",
                CallerScript(list(steps), audio or CallerAudio()),
                caller_id=("Alice", caller_id),
                variables=[("FLOW", flow.name)],
            )
            await call.finished(timeout=WAIT)
            call_id = call.linkedid or ""
            await self.sink.wait_for(
                lambda e: isinstance(e, IvrEnded) and e.call_id == call_id, timeout=WAIT
            )
            async with asyncio.timeout(WAIT):  # the AGI session ends after the channel
                while server.active_sessions:  # noqa: ASYNC110 - nothing signals this count
                    await asyncio.sleep(0.01)
        finally:
            await sim.close()
            await server.close()
            await webhooks.close()
        two = call.two
        commands = [
            values["Command"]
            for values in (dict(e) for e in call.events)
            if values.get("Event") == "AGIExecStart"
            and two is not None
            and values.get("Channel") == two.name
        ]
        variables = dict(two.variables) if two is not None else {}
        return CallResult(self.sink.for_call(call_id), commands, variables, call)

    def played(self, result: CallResult, text: str, language: str = "en") -> bool:
        """True if the text prompt was rendered and given to Asterisk in this call."""
        stem = str(self.renderer.cached_path(text, language).with_suffix(""))
        return self.renderer.cached_path(text, language).is_file() and any(
            stem in c for c in result.commands
        )


@pytest.fixture(scope="session")
def prompt_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One prompt cache for the whole run, so each text is rendered once."""
    return tmp_path_factory.mktemp("prompts")


@pytest.fixture
def rig(prompt_cache: Path) -> Rig:
    return Rig(prompt_cache)


# --- pure helpers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+15551230001", "+15551230001"),
        ("+33 6 12-34-56-78", "+33612345678"),
        ("(555) 123-0001", "5551230001"),
        ("unknown", ""),
        ("", ""),
        ("bcall", ""),
        ("anonymous", ""),
    ],
)
def test_caller_ids_are_normalised_to_e164_like_numbers(raw: str, expected: str) -> None:
    assert normalise_number(raw) == expected


def test_keypad_hint_numbers_the_words_in_the_callers_language() -> None:
    assert keypad_hint(("ticket", "agent"), "en") == "Press 1 for ticket. Press 2 for agent."
    assert keypad_hint(("agent",), "fr") == "Tapez 1 pour agent."


# --- keypad menus ----------------------------------------------------------------------------


async def test_given_main_flow_when_caller_presses_1_then_1_then_sales_queue_hand_off(
    rig: Rig,
) -> None:
    result = await rig.call(
        shipped("main"),
        [WaitForPrompt("GET DATA"), Press("1"), WaitForPrompt("GET DATA"), Press("1")],
    )

    assert isinstance(result.path[0], IvrStarted)
    assert result.path[0].caller == CALLER
    assert [(e.step, e.digits) for e in result.of(DigitsEntered)] == [
        ("language", "1"),
        ("main-menu", "1"),
    ]
    assert result.steps == ["welcome", "language", "english", "opening-hours", "main-menu", "sales"]
    assert result.ended.outcome is Outcome.QUEUED
    assert result.ended.destination == "sales"
    assert result.variables["CC_QUEUE"] == "sales"
    assert result.variables["CC_SKILLS"] == "sales"
    assert result.variables["CC_PRIORITY"] == "0"
    assert result.variables["CC_LANGUAGE"] == "en"
    assert result.variables["CC_IVR_DONE"] == "1"
    assert result.variables["AGISTATUS"] == "SUCCESS"
    assert rig.played(result, "Welcome to Example Company.")


async def test_given_main_flow_when_caller_chooses_french_then_language_set_and_prompts_french(
    rig: Rig,
) -> None:
    result = await rig.call(
        shipped("main"),
        [WaitForPrompt("GET DATA"), Press("2"), WaitForPrompt("GET DATA"), Press("2")],
    )

    assert "EXEC Set CHANNEL(language)=fr" in result.commands
    assert ("language", "fr") in result.of(VariablesSet)[0].values
    main_menu_fr = shipped("main").prompts["main-menu"].texts["fr"]
    assert rig.played(result, main_menu_fr, "fr")
    assert result.ended.destination == "support"
    assert result.variables["CC_LANGUAGE"] == "fr"


async def test_given_a_wrong_digit_then_a_right_one_then_invalid_prompt_and_one_retry_used(
    rig: Rig,
) -> None:
    result = await rig.call(
        shipped("main"),
        [
            WaitForPrompt("GET DATA"),
            Press("1"),
            WaitForPrompt("GET DATA"),
            Press("7"),
            Pause(1.0),
            WaitForPrompt("GET DATA"),
            Press("2"),
        ],
    )

    rejected = result.of(InputRejected)
    assert [(r.step, r.reason, r.attempt, r.gave_up) for r in rejected] == [
        ("main-menu", Rejection.INVALID, 1, False)
    ]
    assert rig.played(result, "Sorry, that is not a valid choice.")
    assert result.ended.destination == "support"


async def test_given_no_input_at_all_then_retries_run_out_and_the_operator_queue_takes_the_call(
    rig: Rig,
) -> None:
    result = await rig.call(shipped("main"), [])

    rejected = [(r.step, r.reason, r.gave_up) for r in result.of(InputRejected)]
    assert rejected == [
        ("language", Rejection.NO_INPUT, False),
        ("language", Rejection.NO_INPUT, True),
        ("main-menu", Rejection.NO_INPUT, False),
        ("main-menu", Rejection.NO_INPUT, False),
        ("main-menu", Rejection.NO_INPUT, True),
    ]
    assert all(e.timed_out for e in result.of(DigitsEntered))
    assert rig.played(result, "Sorry, I did not hear your choice.")
    assert result.ended.destination == "operator"
    assert result.variables["CC_PRIORITY"] == "5"


MENU_FLOW = """
name: menu-test
start: menu
steps:
  menu:
    type: menu
    prompt: digits/1
    options: {"1": yes, "2": no}
    timeout_ms: 2000
    retries: 1
    invalid_prompt: invalid
    on_failure: bye
  yes:
    type: hangup
    prompt: digits/2
  no:
    type: hangup
  bye:
    type: hangup
    prompt: vm-goodbye
"""


async def test_given_hash_at_once_then_it_counts_as_no_input_and_failure_hangs_up(
    rig: Rig,
) -> None:
    result = await rig.call(
        flow_from(MENU_FLOW),
        [WaitForPrompt("GET DATA"), Press("#"), Pause(0.5), WaitForPrompt("GET DATA"), Press("#")],
    )

    assert [(e.digits, e.timed_out) for e in result.of(DigitsEntered)] == [("", False)] * 2
    assert [r.reason for r in result.of(InputRejected)] == [Rejection.NO_INPUT] * 2
    assert result.steps[-1] == "bye"
    assert result.ended.outcome is Outcome.HUNG_UP
    goodbye = ['STREAM FILE vm-goodbye ""', "HANGUP", "SET VARIABLE CC_IVR_DONE 1"]
    assert result.commands[-3:] == goodbye
    assert result.variables["AGISTATUS"] == "HANGUP"


COLLECT_FLOW = """
name: collect-test
start: account
steps:
  account:
    type: collect
    prompt: digits/1
    variable: account
    validate: luhn
    min_digits: 4
    max_digits: 6
    retries: 1
    invalid_prompt: invalid
    next: done
    on_failure: failed
  done:
    type: set
    variables: {account_checked: "{account}"}
    next: bye
  failed:
    type: hangup
    prompt: vm-goodbye
  bye:
    type: hangup
"""


async def test_given_too_many_digits_then_only_max_digits_are_read_and_validated(
    rig: Rig,
) -> None:
    result = await rig.call(
        flow_from(COLLECT_FLOW), [WaitForPrompt("GET DATA"), Press("12345678", gap=0.1)]
    )

    first = result.of(DigitsEntered)[0]
    assert (first.digits, first.timed_out) == ("123456", False)
    assert "GET DATA digits/1 5000 6" in result.commands
    assert result.of(InputRejected)[0].reason is Rejection.INVALID


async def test_given_a_luhn_failure_then_a_valid_number_then_the_variable_is_set_on_the_channel(
    rig: Rig,
) -> None:
    result = await rig.call(
        flow_from(COLLECT_FLOW),
        [
            WaitForPrompt("GET DATA"),
            Press("1234#"),
            Pause(0.5),
            WaitForPrompt("GET DATA"),
            Press("79921#", gap=0.1),  # 7992 + check digit 1
        ],
    )

    assert [e.digits for e in result.of(DigitsEntered)] == ["1234", "79921"]
    assert [r.reason for r in result.of(InputRejected)] == [Rejection.INVALID]
    assert result.variables["account_checked"] == "79921"
    assert "SET VARIABLE account_checked 79921" in result.commands
    assert result.ended.outcome is Outcome.HUNG_UP


STAR_FLOW = """
name: star-test
start: code
steps:
  code:
    type: collect
    prompt: digits/1
    variable: code
    terminator: "*"
    max_digits: 8
    next: bye
  bye:
    type: hangup
"""


async def test_given_a_star_terminator_then_digits_are_read_with_wait_for_digit(rig: Rig) -> None:
    result = await rig.call(
        flow_from(STAR_FLOW), [WaitForPrompt("WAIT FOR DIGIT"), Press("42*", delay=0.2, gap=0.3)]
    )

    assert result.of(DigitsEntered)[0].digits == "42"
    assert not result.ran("GET DATA")
    assert result.ran("WAIT FOR DIGIT 5000")


# --- conditions and set ----------------------------------------------------------------------


async def test_given_sunday_when_main_flow_runs_then_closed_branch_records_voicemail(
    rig: Rig,
) -> None:
    rig.clock_at = SUNDAY_NOON_PARIS
    result = await rig.call(
        shipped("main"),
        [
            WaitForPrompt("GET DATA"),
            Press("1"),
            WaitForPrompt("RECORD FILE"),
            Pause(2.0),
            Press("#"),
        ],
    )

    assert "opening-hours" in result.steps
    assert "main-menu" not in result.steps
    assert "closed" in result.steps


async def test_given_a_known_caller_then_collect_then_set_puts_variables_on_the_channel(
    rig: Rig,
) -> None:
    rig.customers = InMemoryCustomerDirectory(known=[CALLER])
    result = await rig.call(
        shipped("sales"),
        [WaitForPrompt("GET DATA"), Press("79927398713#", gap=0.1)],
    )

    assert result.steps[:3] == ["known", "account", "existing"]
    assert result.variables["customer_type"] == "existing"
    assert result.variables["CC_SKILLS"] == "sales"
    assert result.ended.destination == "sales"


async def test_given_a_vip_caller_then_priority_and_skills_reach_the_queue_hand_off(
    rig: Rig,
) -> None:
    rig.customers = InMemoryCustomerDirectory(vip=[CALLER])
    result = await rig.call(
        shipped("sales"),
        [WaitForPrompt("GET DATA"), Press("79927398713#", gap=0.1)],
    )

    assert result.steps[:2] == ["known", "vip"]
    assert result.variables["CC_PRIORITY"] == "10"
    assert result.variables["CC_SKILLS"] == "key-accounts,sales"


async def test_given_an_unknown_caller_then_new_customer_skills_are_set(rig: Rig) -> None:
    result = await rig.call(shipped("sales"), [])

    assert result.steps[:3] == ["known", "new-customer", "new-skills"]
    assert "SET VARIABLE customer_type new" in result.commands
    assert result.variables["CC_SKILLS"] == "sales,new-business"


# --- a caller who hangs up in every kind of step ---------------------------------------------

HANGUP_CASES: dict[str, tuple[str, list[Step]]] = {
    "play": (
        "under-test: {type: play, prompts: [digits/1], next: bye}",
        [WaitForPrompt("digits/1"), HangUp()],
    ),
    "menu": (
        'under-test: {type: menu, prompt: digits/1, options: {"1": bye}}',
        [WaitForPrompt("GET DATA"), HangUp()],
    ),
    "collect": (
        "under-test: {type: collect, prompt: digits/1, variable: x, next: bye}",
        [WaitForPrompt("GET DATA"), HangUp()],
    ),
    "speech": (
        "under-test: {type: speech, prompt: digits/1, options: {agent: bye}}",
        [WaitForPrompt("digits/1"), HangUp()],
    ),
    "kb_answer": (
        "under-test: {type: kb_answer, question: opening hours, intro: digits/1, next: bye}",
        [WaitForPrompt("digits/1"), HangUp()],
    ),
    "callback": (
        "under-test: {type: callback, confirm_prompt: digits/1, enter_prompt: digits/2, next: bye}",
        [WaitForPrompt("GET DATA"), HangUp()],
    ),
    "voicemail": (
        "under-test: {type: voicemail, prompt: digits/1, next: bye}",
        [WaitForPrompt("RECORD FILE"), HangUp()],
    ),
    "transfer": (
        'under-test: {type: transfer, number: "+4930123", on_failure: bye}',
        [Pause(1.0), HangUp()],
    ),
    "survey": (
        "under-test: {type: survey, questions: [{name: q, prompt: digits/1}], next: bye}",
        [WaitForPrompt("GET DATA"), HangUp()],
    ),
}


@pytest.mark.parametrize("step_type", sorted(HANGUP_CASES))
async def test_given_a_caller_who_hangs_up_in_a_step_then_the_session_ends_and_path_is_kept(
    rig: Rig, step_type: str
) -> None:
    step, caller = HANGUP_CASES[step_type]
    text = f"name: hangup-{step_type}\nstart: under-test\nsteps:\n  {step}\n  bye: {{type: hangup}}"

    rig.knowledge = InMemoryKnowledgeBase({"opening hours": "We are open from 8 to 6."})
    agents = {"+4930123": AgentScript(answer_after=None)}

    result = await rig.call(flow_from(text), caller, caller_id="5551230001", agents=agents)

    assert isinstance(result.path[0], IvrStarted)
    assert result.steps == ["under-test"]
    assert result.ended.outcome is Outcome.CALLER_HUNG_UP
    assert result.ended.step == "under-test"
    assert "CC_IVR_DONE" not in result.variables
    assert result.variables["AGISTATUS"] == "HANGUP"


async def test_given_a_caller_who_hangs_up_during_the_goodbye_then_the_ivrs_hangup_stands(
    rig: Rig,
) -> None:
    flow = flow_from("name: bye-test\nstart: bye\nsteps:\n  bye: {type: hangup, prompt: digits/1}")

    result = await rig.call(flow, [WaitForPrompt("digits/1"), HangUp()])

    # The session had already ended (hung_up) when the prompt started; the path is complete.
    assert result.ended.outcome is Outcome.HUNG_UP
    assert "HANGUP" not in result.commands


async def test_given_a_missing_prompt_on_a_live_channel_then_it_is_skipped_and_digits_still_read(
    rig: Rig,
) -> None:
    text = """
name: missing-prompt
start: hello
steps:
  hello: {type: play, prompts: [no-such-prompt], next: menu}
  menu: {type: menu, prompt: no-such-prompt, options: {"1": bye}, retries: 0}
  bye: {type: hangup}
"""
    flow, problems = check_flow_text(text, "missing.yaml", lambda name: True)
    assert flow is not None
    assert not problems

    result = await rig.call(flow, [WaitForPrompt("WAIT FOR DIGIT"), Press("1", delay=0.2)])

    # STREAM FILE and GET DATA answer result=-1 for a missing file; CHANNEL STATUS says "up".
    assert result.ran("CHANNEL STATUS") == ["CHANNEL STATUS", "CHANNEL STATUS"]
    assert result.of(DigitsEntered)[0].digits == "1"
    assert result.ended.outcome is Outcome.HUNG_UP
    assert result.variables["AGISTATUS"] == "HANGUP"
