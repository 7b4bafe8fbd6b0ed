"""The simulator's extensions.conf subset: parsing, matching and substitution."""

from __future__ import annotations

import pytest

from asterisk_sim.dialplan import parse_dialplan, split_app_args, substitute
from asterisk_sim.errors import DialplanError
from tests.traces import TRACES_DIR

TEXT = """
[globals]
URL = agi://127.0.0.1:4573/ivr

[main]
exten => s,1,NoOp(start ${CHANNEL}) ; comment
 same => n(menu),Answer()
 same => n,Goto(done)
 same => n(done),Hangup()
exten => _1XX,1,NoOp(pattern ${EXTEN})
include => other

[other]
exten => 999,1,Playback(beep)
"""


def test_given_same_and_labels_when_parsed_then_priorities_follow_n() -> None:
    plan = parse_dialplan(TEXT)
    step = plan.find("main", "s", 2)
    assert step is not None
    assert (step.app, step.args, step.label) == ("Answer", "", "menu")
    assert plan.label("main", "s", "done") == 4
    assert plan.globals == {"URL": "agi://127.0.0.1:4573/ivr"}


def test_given_patterns_and_includes_when_matching_then_found_in_order() -> None:
    plan = parse_dialplan(TEXT)
    assert plan.has_extension("main", "123")
    assert not plan.has_extension("main", "1234")
    assert plan.has_extension("main", "999")
    assert not plan.has_extension("nowhere", "s")


def test_the_recorded_dialplan_parses_with_every_trace_context() -> None:
    plan = parse_dialplan((TRACES_DIR / "asterisk-etc" / "extensions.conf").read_text())
    for context in ("trace-ivr", "trace-agents", "trace-calls", "trace-redirect", "trace-caller"):
        assert plan.has_context(context)
    step = plan.find("trace-ivr", "agent", 2)
    assert step is not None
    assert step.args == "agi://127.0.0.1:4573/ivr/agent?queue=support,${AGENT_TARGET}"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("${A}-${B}", "1-two"),
        ("${UNSET}", ""),
        ("${B:1:2}", "wo"),
        ("${CALLERID(num)}", "+1555"),
        ('${IF($["${A}" = "1"]?yes:no)}', "yes"),
        ('${IF($["${UNSET}" = ""]?3:${UNSET})}', "3"),
        ("$[${A} + 2]", "3"),
    ],
)
def test_substitution_expands_variables_functions_and_expressions(
    template: str, expected: str
) -> None:
    variables = {"A": "1", "B": "two"}

    def function(name: str, args: str) -> str | None:
        return "+1555" if (name, args) == ("CALLERID", "num") else None

    assert substitute(template, variables.get, function) == expected


def test_app_args_split_at_the_first_parenthesis() -> None:
    assert split_app_args("NoOp(a (b) c)") == ("NoOp", "a (b) c")
    assert split_app_args("Answer") == ("Answer", "")


def test_given_same_without_exten_when_parsed_then_error() -> None:
    with pytest.raises(DialplanError):
        parse_dialplan("[x]\n same => n,NoOp()\n")
