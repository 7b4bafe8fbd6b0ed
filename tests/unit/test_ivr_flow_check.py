"""Flow files: loading with line numbers and checking the whole graph."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.domain.flow import MenuStep, Problem, StepId
from ivr.domain.flow_check import FlowInvalidError, check_flow_file, load_checked_flow
from ivr.domain.flow_loader import load_flow_text

FLOWS_DIR = Path(__file__).resolve().parents[2] / "ivr" / "flows"
SHIPPED = sorted(FLOWS_DIR.glob("*.yaml"))

BAD_FLOW = """\
name: bad
start: welcome
colour: blue
calendars:
  office:
    timezone: Mars/Olympus
    hours:
      mon-fry: "08:00-18:00"
      tue: "18:00-08:00"
steps:
  welcome:
    type: play
    prompts: [no-such-sound]
    next: menu
  menu:
    type: menu
    prompt: beep
    options:
      "1": nowhere
      "#": welcome
      "12": welcome
      "2": spin
    timout_ms: 3000
    on_failure: bye
  spin:
    type: play
    prompts: [beep]
    next: spin2
  spin2:
    type: set
    next: spin
  orphan:
    type: hangup
  weird:
    type: dance
  collect:
    type: collect
    prompt: beep
    terminator: "5"
  when:
    type: condition
    branches:
      - if: {open: nocal}
        goto: orphan
    else: orphan
  bye:
    type: hangup
"""

EXPECTED_BAD = [
    (3, "unknown key 'colour'"),
    (6, "unknown time zone 'Mars/Olympus'"),
    (8, "bad days 'mon-fry'"),
    (9, "bad hours '18:00-08:00'"),
    (13, "prompt 'no-such-sound' is neither a text prompt nor a known sound file"),
    (19, "'options 1' goes to 'nowhere', which does not exist"),
    (20, "bad digit '#'"),
    (21, "bad digit '12'"),
    (23, "unknown key 'timout_ms'"),
    (25, "loop without an exit: spin -> spin2 -> spin"),
    (32, "step 'orphan' is unreachable"),
    (34, "step 'weird' is unreachable"),
    (35, "unknown step type 'dance'"),
    (36, "step 'collect': missing key 'variable'"),
    (36, "step 'collect': missing key 'next'"),
    (36, "step 'collect' is unreachable"),
    (39, "'terminator': bad digit '5'"),
    (40, "step 'when' is unreachable"),
    (43, "unknown calendar 'nocal'"),
]


def write(tmp_path: Path, text: str, name: str = "flow.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def lines_and_messages(problems: list[Problem]) -> list[tuple[int, str]]:
    return [(p.line, p.message) for p in problems]


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_flows_check_clean(path: Path) -> None:
    assert check_flow_file(path) == []
    assert load_checked_flow(path).steps


def test_the_five_example_flows_are_shipped() -> None:
    assert {p.stem for p in SHIPPED} >= {"main", "support", "sales", "after_hours", "survey"}


def test_given_a_flow_with_every_kind_of_mistake_then_each_is_reported_at_its_line(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, BAD_FLOW)
    problems = check_flow_file(path)
    assert all(p.file == str(path) for p in problems)
    found = lines_and_messages(problems)
    for line, fragment in EXPECTED_BAD:
        assert any(got_line == line and fragment in message for got_line, message in found), (
            f"missing {line}: {fragment} in {found}"
        )
    assert len(problems) == len(EXPECTED_BAD), found


def test_problems_print_as_file_colon_line() -> None:
    assert str(Problem("a.yaml", 3, "oops")) == "a.yaml:3: oops"


def test_given_a_yaml_syntax_error_then_it_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nstart: a\nsteps:\n  a: [1,\n")
    [problem] = check_flow_file(path)
    assert problem.line >= 4
    assert "YAML syntax error" in problem.message


def test_given_a_missing_file_then_one_problem_says_so(tmp_path: Path) -> None:
    [problem] = check_flow_file(tmp_path / "nope.yaml")
    assert "cannot read" in problem.message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("- a list\n", "must be a mapping"),
        ("name: x\nstart: a\n", "missing key 'steps'"),
        ("name: x\nsteps:\n  a: {type: hangup}\n", "missing key 'start'"),
        ("name: x\nstart: b\nsteps:\n  a: {type: hangup}\n", "start step 'b' does not exist"),
        ("name: x\nstart: a\nsteps:\n  a: {type: hangup}\n  a: {type: hangup}\n", "duplicate"),
    ],
)
def test_given_a_malformed_flow_then_the_shape_problem_is_reported(
    text: str, fragment: str
) -> None:
    flow, problems = load_flow_text(text, "f.yaml")
    from ivr.domain.flow_check import check_flow

    if flow is not None:
        problems = [*problems, *check_flow(flow)]
    assert any(fragment in p.message for p in problems), problems


MENU_LOOP = """\
name: loop
start: menu
steps:
  menu:
    type: menu
    prompt: beep
    options: {"1": menu}
{extra}
  bye:
    type: hangup
  unused:
    type: play
    prompt: beep
    next: bye
"""


def test_given_a_menu_whose_retries_go_nowhere_then_it_is_a_loop_without_exit(
    tmp_path: Path,
) -> None:
    problems = check_flow_file(write(tmp_path, MENU_LOOP.replace("{extra}", "")))
    assert any(p.line == 4 and "loop without an exit: menu -> menu" in p.message for p in problems)


def test_given_a_menu_whose_retries_go_to_a_hangup_then_the_loop_has_an_exit(
    tmp_path: Path,
) -> None:
    text = MENU_LOOP.replace("{extra}", "    on_failure: bye").replace("  unused:", "  x:")
    problems = check_flow_file(write(tmp_path, text))
    assert [p.message for p in problems] == ["step 'x' is unreachable"]


SOUND_FLOW = """\
name: sounds
start: a
steps:
  a:
    type: play
    prompts: [custom/welcome, beep]
    next: b
  b:
    type: hangup
    prompt: goodbye
"""


def test_given_sound_dirs_then_files_there_and_in_language_folders_are_found(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, SOUND_FLOW)
    [problem] = check_flow_file(path)
    assert problem.line == 6
    assert "'custom/welcome'" in problem.message
    sounds = tmp_path / "sounds"
    (sounds / "fr" / "custom").mkdir(parents=True)
    (sounds / "fr" / "custom" / "welcome.wav").write_bytes(b"RIFF")
    assert check_flow_file(path, sounds_dirs=[sounds]) == []


def test_given_an_invalid_flow_when_loaded_for_use_then_it_raises_with_the_problems(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, BAD_FLOW)
    with pytest.raises(FlowInvalidError) as caught:
        load_checked_flow(path)
    assert caught.value.error_id == "ivr-flow-invalid"
    assert len(caught.value.problems) == len(EXPECTED_BAD)


def test_menu_defaults_and_digit_keys_are_read_as_text() -> None:
    text = "name: m\nstart: m\nsteps:\n  m:\n    type: menu\n    prompt: beep\n"
    text += "    options:\n      1: b\n      0: b\n      '*': b\n  b: {type: hangup}\n"
    flow, problems = load_flow_text(text)
    assert problems == []
    assert flow is not None
    menu = flow.steps[StepId("m")]
    assert isinstance(menu, MenuStep)
    assert set(menu.options) == {"1", "0", "*"}
    assert (menu.timeout_ms, menu.retries, menu.repeat) == (5000, 3, True)


def test_every_step_type_is_documented() -> None:
    from ivr.domain.flow import StepType

    doc = (Path(__file__).resolve().parents[2] / "docs" / "ivr-flows.md").read_text(
        encoding="utf-8"
    )
    for kind in StepType:
        assert f"### `{kind.value}`" in doc
