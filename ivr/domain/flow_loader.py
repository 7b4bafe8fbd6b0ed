"""Load a YAML flow into ``ivr.domain.flow`` objects, reporting every mistake with its line.

The text is parsed with ``yaml.compose`` (nodes, not Python objects) so that every key and value
keeps its ``start_mark``; lines in problems are 1-based. The loader never stops at the first
mistake: a step that cannot be built is left out of ``Flow.steps`` and its id is put in
``invalid_steps`` (so that references to it are not reported a second time as dangling), and the
references it did declare are still recorded for the graph checks in ``ivr.domain.flow_check``.
Checks that need the whole graph (dangling targets, unreachable steps, loops, prompts) are not
done here.
"""

from __future__ import annotations

import contextlib
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import date, time
from enum import StrEnum
from typing import Any, TypeVar

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ivr.domain.flow import (
    STEP_CLASSES,
    Branch,
    BusinessCalendar,
    CallbackStep,
    CallerKnownTest,
    CollectStep,
    ConditionStep,
    Flow,
    HangupStep,
    HolidayTest,
    Interval,
    KbAnswerStep,
    LookupKind,
    LookupStep,
    MenuStep,
    OpenTest,
    PlayStep,
    Problem,
    PromptRef,
    QueueStep,
    Ref,
    SetStep,
    SpeechStep,
    Step,
    StepId,
    StepType,
    SurveyQuestion,
    SurveyStep,
    Test,
    TextPromptDef,
    TransferStep,
    Validation,
    VariableOp,
    VariableTest,
    VipTest,
    VoicemailStep,
)

T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_INTERVAL = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
_YEARLY = re.compile(r"^(\d{2})-(\d{2})$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_NUMBER = re.compile(r"\+?(?:[0-9*#]|\{[A-Za-z_][A-Za-z0-9_.]*\})+")
TOP_KEYS = frozenset({"name", "description", "start", "language", "prompts", "calendars", "steps"})
MENU_DIGITS = frozenset("0123456789*")
TERMINATORS = frozenset({"", "#", "*"})


class _Missing(Exception):
    """A value could not be read; the problem has already been reported."""


@dataclass
class _Context:
    file: str
    problems: list[Problem] = field(default_factory=list)
    refs: list[Ref] = field(default_factory=list)
    prompt_refs: list[PromptRef] = field(default_factory=list)

    def report(self, node: Node | int, message: str) -> None:
        line = node if isinstance(node, int) else node.start_mark.line + 1
        self.problems.append(Problem(self.file, line, message))


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _scalar(node: Node) -> Any:
    return SafeConstructor().construct_object(node, deep=True)


class _Fields:
    """The keys of one YAML mapping, read one by one and checked against the allowed keys."""

    def __init__(
        self, ctx: _Context, node: MappingNode, where: str, line: int | None = None
    ) -> None:
        self.ctx = ctx
        self.node = node
        self.where = where
        self._line = line if line is not None else _line(node)
        self.items: dict[str, tuple[ScalarNode, Node]] = {}
        for key, value in node.value:
            if not isinstance(key, ScalarNode):
                ctx.report(key, f"{where}: keys must be plain strings")
                continue
            if key.value in self.items:
                ctx.report(key, f"{where}: duplicate key {key.value!r}")
                continue
            self.items[key.value] = (key, value)

    @property
    def line(self) -> int:
        return self._line

    def node_of(self, key: str, required: bool = False) -> Node | None:
        item = self.items.get(key)
        if item is None:
            if required:
                self.ctx.report(self._line, f"{self.where}: missing key {key!r}")
                raise _Missing
            return None
        return item[1]

    def key_line(self, key: str) -> int:
        return _line(self.items[key][0]) if key in self.items else self.line

    def get(self, key: str, kind: Callable[[_Context, Node, str], T]) -> T | None:
        """The value of an optional key, or ``None`` if absent or wrong (already reported)."""
        node = self.node_of(key)
        if node is None:
            return None
        try:
            return kind(self.ctx, node, f"{self.where}: {key!r}")
        except _Missing:
            return None

    def need(self, key: str, kind: Callable[[_Context, Node, str], T]) -> T:
        node = self.node_of(key, required=True)
        assert node is not None
        return kind(self.ctx, node, f"{self.where}: {key!r}")

    def check_keys(self, allowed: frozenset[str]) -> None:
        for name, (key, _) in self.items.items():
            if name not in allowed:
                self.ctx.report(key, f"{self.where}: unknown key {name!r}")


# --- value readers: (ctx, node, where) -> value, raising _Missing after reporting -------------


def _str(ctx: _Context, node: Node, where: str) -> str:
    if not isinstance(node, ScalarNode) or node.tag.endswith(":null"):
        ctx.report(node, f"{where} must be a string")
        raise _Missing
    return str(node.value)


def _int(ctx: _Context, node: Node, where: str) -> int:
    value = _scalar(node) if isinstance(node, ScalarNode) else None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        ctx.report(node, f"{where} must be a whole number >= 0")
        raise _Missing
    return value


def _float(ctx: _Context, node: Node, where: str) -> float:
    value = _scalar(node) if isinstance(node, ScalarNode) else None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
        ctx.report(node, f"{where} must be a number between 0 and 1")
        raise _Missing
    return float(value)


def _bool(ctx: _Context, node: Node, where: str) -> bool:
    value = _scalar(node) if isinstance(node, ScalarNode) else None
    if not isinstance(value, bool):
        ctx.report(node, f"{where} must be true or false")
        raise _Missing
    return value


def _str_list(ctx: _Context, node: Node, where: str) -> tuple[str, ...]:
    if isinstance(node, ScalarNode):
        return (_str(ctx, node, where),)
    if not isinstance(node, SequenceNode):
        ctx.report(node, f"{where} must be a list of strings")
        raise _Missing
    return tuple(_str(ctx, item, where) for item in node.value)


def _sequence(ctx: _Context, node: Node, where: str) -> SequenceNode:
    if not isinstance(node, SequenceNode):
        ctx.report(node, f"{where} must be a list")
        raise _Missing
    return node


def _mapping(ctx: _Context, node: Node, where: str) -> MappingNode:
    if not isinstance(node, MappingNode):
        ctx.report(node, f"{where} must be a mapping")
        raise _Missing
    return node


def _enum(values: type[E]) -> Callable[[_Context, Node, str], E]:
    def read(ctx: _Context, node: Node, where: str) -> E:
        text = _str(ctx, node, where)
        try:
            return values(text)
        except ValueError:
            choices = ", ".join(v.value for v in values)
            ctx.report(node, f"{where}: {text!r} is not one of {choices}")
            raise _Missing from None

    return read


# --- step readers ----------------------------------------------------------------------------


def _allowed_keys(cls: type[Step]) -> frozenset[str]:
    renames = {"otherwise": "else"}
    names = {renames.get(f.name, f.name) for f in fields(cls)} - {"id", "line"}
    if cls is PlayStep:
        names.add("prompt")
    return frozenset(names | {"type", "description"})


STEP_KEYS: dict[StepType, frozenset[str]] = {
    kind: _allowed_keys(cls) for kind, cls in STEP_CLASSES.items()
}


class _StepReader:
    """Reads one step's mapping; records target and prompt references as it goes.

    Optional values that are wrong are reported and replaced by their default, so that one
    mistake does not hide the next; only a missing or wrong required value stops the step.
    """

    def __init__(self, ctx: _Context, step_id: StepId, fields: _Fields) -> None:
        self.ctx = ctx
        self.id = step_id
        self.f = fields
        self.broken = False

    def need(self, key: str, kind: Callable[[_Context, Node, str], T], placeholder: T) -> T:
        """A required value; if missing or wrong, mark the step broken and go on reading."""
        try:
            return self.f.need(key, kind)
        except _Missing:
            self.broken = True
            return placeholder

    def _where(self, key: str) -> str:
        return f"step {self.id!r}: {key!r}"

    def target(self, key: str) -> StepId | None:
        node = self.f.node_of(key)
        if node is None:
            return None
        try:
            return self.target_node(node, key)
        except _Missing:
            return None

    def need_target(self, key: str) -> StepId:
        return self.need(key, lambda _c, node, _w: self.target_node(node, key), StepId(""))

    def target_node(self, node: Node, label: str) -> StepId:
        name = StepId(_str(self.ctx, node, self._where(label)))
        self.ctx.refs.append(Ref(self.id, label, name, _line(node)))
        return name

    def prompt(self, key: str) -> str | None:
        node = self.f.node_of(key)
        if node is None:
            return None
        try:
            return self.prompt_node(node, self._where(key))
        except _Missing:
            return None

    def need_prompt(self, key: str) -> str:
        return self.need(key, lambda _c, node, w: self.prompt_node(node, w), "")

    def prompt_node(self, node: Node, where: str) -> str:
        name = _str(self.ctx, node, where)
        self.ctx.prompt_refs.append(PromptRef(self.id, name, _line(node)))
        return name

    def int_(self, key: str, default: int, low: int = 0) -> int:
        value = self.f.get(key, _int)
        if value is None:
            return default
        if value < low:
            self.ctx.report(self.f.items[key][1], f"{self._where(key)} must be >= {low}")
            return default
        return value

    def digit_options(self, key: str, allowed: frozenset[str]) -> dict[str, StepId]:
        node = self.need(key, _mapping, None)
        if node is None:
            return {}
        where = self._where(key)
        options_fields = _Fields(self.ctx, node, where)
        options: dict[str, StepId] = {}
        for digit, (key_node, value) in options_fields.items.items():
            if digit not in allowed:
                why = "'#' ends input and cannot be chosen" if digit == "#" else "not one digit"
                self.ctx.report(key_node, f"{where}: bad digit {digit!r} ({why})")
                continue
            with contextlib.suppress(_Missing):
                options[digit] = self.target_node(value, f"{key} {digit}")
        return options

    def word_options(self, key: str) -> dict[str, StepId]:
        node = self.f.node_of(key)
        if node is None:
            return {}
        where = self._where(key)
        options_fields = _Fields(self.ctx, _mapping(self.ctx, node, where), where)
        options: dict[str, StepId] = {}
        for word, (_, value) in options_fields.items.items():
            with contextlib.suppress(_Missing):
                options[word.lower()] = self.target_node(value, f"{key} {word}")
        return options


def _read_play(r: _StepReader) -> Step:
    node = r.f.node_of("prompts")
    if node is None:
        prompts: tuple[str, ...] = (r.need_prompt("prompt"),)
    else:
        seq = node.value if isinstance(node, SequenceNode) else [node]
        prompts = tuple(r.prompt_node(item, f"step {r.id!r}: 'prompts'") for item in seq)
    return PlayStep(r.id, r.f.line, prompts, r.need_target("next"))


def _read_menu(r: _StepReader) -> Step:
    return MenuStep(
        r.id,
        r.f.line,
        prompt=r.need_prompt("prompt"),
        options=r.digit_options("options", MENU_DIGITS),
        timeout_ms=r.int_("timeout_ms", 5000, low=500),
        retries=r.int_("retries", 3),
        invalid_prompt=r.prompt("invalid_prompt"),
        timeout_prompt=r.prompt("timeout_prompt"),
        repeat=r.f.get("repeat", _bool) is not False,
        operator=r.target("operator"),
        on_failure=r.target("on_failure"),
    )


def _terminator(ctx: _Context, node: Node, where: str) -> str:
    value = "" if node.tag.endswith(":null") else _str(ctx, node, where)
    if value not in TERMINATORS:
        ctx.report(node, f"{where}: bad digit {value!r} (use '#', '*' or '')")
        raise _Missing
    return value


def _read_collect(r: _StepReader) -> Step:
    min_digits = r.int_("min_digits", 1)
    max_digits = r.int_("max_digits", 10, low=1)
    if min_digits > max_digits:
        r.ctx.report(r.f.key_line("min_digits"), f"step {r.id!r}: min_digits > max_digits")
    terminator = r.f.get("terminator", _terminator)
    return CollectStep(
        r.id,
        r.f.line,
        prompt=r.need_prompt("prompt"),
        variable=r.need("variable", _str, ""),
        next=r.need_target("next"),
        min_digits=min_digits,
        max_digits=max_digits,
        terminator="#" if terminator is None else terminator,
        timeout_ms=r.int_("timeout_ms", 5000, low=500),
        validate=r.f.get("validate", _enum(Validation)) or Validation.DIGITS,
        retries=r.int_("retries", 3),
        invalid_prompt=r.prompt("invalid_prompt"),
        on_failure=r.target("on_failure"),
    )


def _read_speech(r: _StepReader) -> Step:
    options = r.word_options("options")
    next_step = r.target("next")
    if not options and next_step is None:
        r.ctx.report(r.f.line, f"step {r.id!r}: a speech step needs 'options' or 'next'")
    threshold = r.f.get("threshold", _float)
    return SpeechStep(
        r.id,
        r.f.line,
        prompt=r.need_prompt("prompt"),
        options=options,
        variable=r.f.get("variable", _str) or "speech",
        threshold=0.5 if threshold is None else threshold,
        timeout_ms=r.int_("timeout_ms", 5000, low=500),
        retries=r.int_("retries", 2),
        no_match_prompt=r.prompt("no_match_prompt"),
        next=next_step,
        on_failure=r.target("on_failure"),
    )


_TEST_KEYS = frozenset({"open", "holiday", "caller_known", "vip", "variable"})


def _read_test(r: _StepReader, node: Node, calendars: frozenset[str]) -> Test:
    where = f"step {r.id!r}: 'if'"
    f = _Fields(r.ctx, _mapping(r.ctx, node, where), where)
    kinds = [key for key in f.items if key in _TEST_KEYS]
    if len(kinds) != 1:
        r.ctx.report(node, f"{where} needs exactly one of {', '.join(sorted(_TEST_KEYS))}")
        raise _Missing
    kind = kinds[0]
    test: Test
    if kind in ("open", "holiday"):
        name = f.need(kind, _str)
        if name not in calendars:
            r.ctx.report(f.items[kind][1], f"{where}: unknown calendar {name!r}")
        test = OpenTest(name) if kind == "open" else HolidayTest(name)
    elif kind == "caller_known":
        test = CallerKnownTest(f.need(kind, _bool))
    elif kind == "vip":
        test = VipTest(f.need(kind, _bool))
    else:
        name = f.need("variable", _str)
        ops = [op for op in VariableOp if op.value in f.items]
        if len(ops) != 1:
            r.ctx.report(
                node, f"{where}: a variable test needs one of equals, not_equals, in, exists"
            )
            raise _Missing
        op = ops[0]
        if op is VariableOp.EXISTS:
            test = VariableTest(name, op, (), expected=f.need("exists", _bool))
        else:
            test = VariableTest(name, op, f.need(op.value, _str_list))
    f.check_keys(_TEST_KEYS | {op.value for op in VariableOp})
    return test


def _read_condition(r: _StepReader, calendars: frozenset[str]) -> Step:
    node = r.need("branches", _sequence, None)
    branches: list[Branch] = []
    for item in node.value if node is not None else ():
        where = f"step {r.id!r}: branch"
        try:
            f = _Fields(r.ctx, _mapping(r.ctx, item, where), where)
            f.check_keys(frozenset({"if", "goto"}))
            target = r.target_node(f.need("goto", lambda _c, n, _w: n), "goto")
            branches.append(Branch(_read_test(r, f.need("if", _mapping), calendars), target))
        except _Missing:
            r.broken = True
    otherwise = r.need_target("else")
    return ConditionStep(r.id, r.f.line, tuple(branches), otherwise)


def _read_set(r: _StepReader) -> Step:
    variables: dict[str, str] = {}
    node = r.f.node_of("variables")
    if node is not None:
        where = f"step {r.id!r}: 'variables'"
        f = _Fields(r.ctx, _mapping(r.ctx, node, where), where)
        variables = {name: _str(r.ctx, value, where) for name, (_, value) in f.items.items()}
    priority = r.f.get("priority", _int)
    return SetStep(
        r.id,
        r.f.line,
        next=r.need_target("next"),
        variables=variables,
        language=r.f.get("language", _str),
        skills=r.f.get("skills", _str_list) or (),
        priority=priority,
    )


def _str_map(r: _StepReader, key: str) -> dict[str, str]:
    node = r.f.node_of(key)
    if node is None:
        return {}
    where = f"step {r.id!r}: {key!r}"
    f = _Fields(r.ctx, _mapping(r.ctx, node, where), where)
    return {name: _str(r.ctx, value, where) for name, (_, value) in f.items.items()}


def _read_lookup(r: _StepReader) -> Step:
    kind = r.need("kind", _enum(LookupKind), LookupKind.WEBHOOK)
    url = r.f.get("url", _str) or ""
    if kind is LookupKind.WEBHOOK and not url.startswith(("http://", "https://")):
        r.ctx.report(r.f.key_line("url"), f"step {r.id!r}: a webhook lookup needs an http(s) 'url'")
    return LookupStep(
        r.id,
        r.f.line,
        kind=kind,
        next=r.need_target("next"),
        params=_str_map(r, "params"),
        url=url,
        timeout_ms=r.int_("timeout_ms", 3000, low=100),
        result=r.f.get("result", _str) or "lookup",
        on_not_found=r.target("on_not_found"),
        on_failure=r.target("on_failure"),
    )


def _read_kb(r: _StepReader) -> Step:
    return KbAnswerStep(
        r.id,
        r.f.line,
        next=r.need_target("next"),
        question=r.f.get("question", _str) or "{speech}",
        intro=r.prompt("intro"),
        timeout_ms=r.int_("timeout_ms", 3000, low=100),
        on_failure=r.target("on_failure"),
    )


def _read_callback(r: _StepReader) -> Step:
    return CallbackStep(
        r.id,
        r.f.line,
        confirm_prompt=r.need_prompt("confirm_prompt"),
        enter_prompt=r.need_prompt("enter_prompt"),
        next=r.need_target("next"),
        min_digits=r.int_("min_digits", 6, low=1),
        max_digits=r.int_("max_digits", 15, low=1),
        timeout_ms=r.int_("timeout_ms", 8000, low=500),
        retries=r.int_("retries", 2),
        on_failure=r.target("on_failure"),
    )


def _read_voicemail(r: _StepReader) -> Step:
    return VoicemailStep(
        r.id,
        r.f.line,
        prompt=r.need_prompt("prompt"),
        next=r.need_target("next"),
        max_seconds=r.int_("max_seconds", 120, low=1),
        subject=r.f.get("subject", _str) or "Voicemail from {caller}",
        on_failure=r.target("on_failure"),
    )


def _read_queue(r: _StepReader) -> Step:
    return QueueStep(
        r.id,
        r.f.line,
        queue=r.need("queue", _str, ""),
        skills=r.f.get("skills", _str_list) or (),
        priority=r.f.get("priority", _int),
        language=r.f.get("language", _str),
        on_failure=r.target("on_failure"),
    )


def _read_transfer(r: _StepReader) -> Step:
    number = r.need("number", _str, "")
    if not _NUMBER.fullmatch(number):
        r.ctx.report(r.f.key_line("number"), f"step {r.id!r}: bad number {number!r}")
    return TransferStep(r.id, r.f.line, number=number, on_failure=r.target("on_failure"))


def _read_survey(r: _StepReader) -> Step:
    node = r.need("questions", _sequence, None)
    questions = []
    for item in node.value if node is not None else ():
        where = f"step {r.id!r}: question"
        try:
            f = _Fields(r.ctx, _mapping(r.ctx, item, where), where)
            f.check_keys(frozenset({"name", "prompt", "min", "max"}))
            name = f.need("name", _str)
            prompt = f.need("prompt", lambda _c, n, w: r.prompt_node(n, w))
        except _Missing:
            r.broken = True
            continue
        low = f.get("min", _int)
        high = f.get("max", _int)
        low = 1 if low is None else low
        high = 5 if high is None else high
        if not 0 <= low <= high <= 9:
            r.ctx.report(item, f"{where} {name!r}: bad digit range {low}-{high} (need 0-9)")
        questions.append(SurveyQuestion(name, prompt, low, high))
    if node is not None and not node.value:
        r.ctx.report(node, f"step {r.id!r}: 'questions' is empty")
    return SurveyStep(
        r.id,
        r.f.line,
        questions=tuple(questions),
        next=r.need_target("next"),
        timeout_ms=r.int_("timeout_ms", 5000, low=500),
        retries=r.int_("retries", 1),
        thanks_prompt=r.prompt("thanks_prompt"),
    )


def _read_hangup(r: _StepReader) -> Step:
    return HangupStep(r.id, r.f.line, prompt=r.prompt("prompt"))


_READERS: dict[StepType, Callable[[_StepReader], Step]] = {
    StepType.PLAY: _read_play,
    StepType.MENU: _read_menu,
    StepType.COLLECT: _read_collect,
    StepType.SPEECH: _read_speech,
    StepType.SET: _read_set,
    StepType.LOOKUP: _read_lookup,
    StepType.KB_ANSWER: _read_kb,
    StepType.CALLBACK: _read_callback,
    StepType.VOICEMAIL: _read_voicemail,
    StepType.QUEUE: _read_queue,
    StepType.TRANSFER: _read_transfer,
    StepType.SURVEY: _read_survey,
    StepType.HANGUP: _read_hangup,
}
assert set(_READERS) | {StepType.CONDITION} == set(STEP_CLASSES)


def _read_step(
    ctx: _Context, step_id: StepId, line: int, node: Node, calendars: frozenset[str]
) -> Step:
    where = f"step {step_id!r}"
    step_fields = _Fields(ctx, _mapping(ctx, node, where), where, line)
    type_node = step_fields.node_of("type", required=True)
    assert type_node is not None
    type_name = _str(ctx, type_node, f"{where}: 'type'")
    try:
        kind = StepType(type_name)
    except ValueError:
        ctx.report(type_node, f"{where}: unknown step type {type_name!r}")
        raise _Missing from None
    step_fields.check_keys(STEP_KEYS[kind])
    reader = _StepReader(ctx, step_id, step_fields)
    if kind is StepType.CONDITION:
        step = _read_condition(reader, calendars)
    else:
        step = _READERS[kind](reader)
    if reader.broken:
        raise _Missing
    return step


# --- calendars and prompts -------------------------------------------------------------------


def _clock(text: str, end: bool) -> time | None:
    hours, minutes = (int(part) for part in text.split(":"))
    if end and (hours, minutes) == (24, 0):
        return time.max
    if hours > 23 or minutes > 59:
        return None
    return time(hours, minutes)


def _days(spec: str) -> list[int] | None:
    days: list[int] = []
    for part in spec.lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in _DAYS or (last and last not in _DAYS):
            return None
        a, b = _DAYS.index(first), _DAYS.index(last or first)
        days.extend(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return days


def _read_calendar(ctx: _Context, name: str, node: Node) -> BusinessCalendar:
    where = f"calendar {name!r}"
    f = _Fields(ctx, _mapping(ctx, node, where), where)
    f.check_keys(frozenset({"timezone", "hours", "holidays"}))
    tz = f.need("timezone", _str)
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        ctx.report(f.items["timezone"][1], f"{where}: unknown time zone {tz!r}")
    hours: dict[int, list[Interval]] = {}
    hf = _Fields(ctx, f.need("hours", _mapping), f"{where}: 'hours'")
    for spec, (key, value) in hf.items.items():
        days = _days(spec)
        if days is None:
            ctx.report(key, f"{where}: bad days {spec!r} (use mon..sun, ranges like mon-fri)")
            continue
        texts: tuple[str, ...] = ()
        with contextlib.suppress(_Missing):
            texts = _str_list(ctx, value, f"{where}: {spec!r}")
        for text in texts:
            match = _INTERVAL.match(text.replace(" ", ""))
            start = _clock(f"{match[1]}:{match[2]}", end=False) if match else None
            stop = _clock(f"{match[3]}:{match[4]}", end=True) if match else None
            if start is None or stop is None or stop <= start:
                ctx.report(value, f"{where}: bad hours {text!r} (use HH:MM-HH:MM)")
                continue
            for day in days:
                hours.setdefault(day, []).append(Interval(start, stop))
    holidays: set[date] = set()
    yearly: set[tuple[int, int]] = set()
    holidays_node = f.get("holidays", _sequence)
    if holidays_node is not None:
        for item in holidays_node.value:
            holiday: Any = _scalar(item) if isinstance(item, ScalarNode) else None
            if isinstance(holiday, date):
                holidays.add(holiday)
            elif isinstance(holiday, str) and (m := _YEARLY.match(holiday)):
                try:
                    date(2000, int(m[1]), int(m[2]))
                    yearly.add((int(m[1]), int(m[2])))
                except ValueError:
                    ctx.report(item, f"{where}: bad holiday {holiday!r}")
            else:
                ctx.report(item, f"{where}: bad holiday {item.value!r} (use YYYY-MM-DD or MM-DD)")
    return BusinessCalendar(
        name,
        tz,
        {day: tuple(spans) for day, spans in hours.items()},
        frozenset(holidays),
        frozenset(yearly),
    )


def _read_prompt(ctx: _Context, name: str, node: Node, language: str) -> TextPromptDef:
    where = f"prompt {name!r}"
    if isinstance(node, ScalarNode):
        return TextPromptDef(name, {language: _str(ctx, node, where)})
    f = _Fields(ctx, _mapping(ctx, node, where), where)
    return TextPromptDef(name, {lang: _str(ctx, v, where) for lang, (_, v) in f.items.items()})


def _section(ctx: _Context, top: _Fields, key: str, read: Callable[[str, Node], T]) -> dict[str, T]:
    node = top.node_of(key)
    if node is None:
        return {}
    where = f"{key!r}"
    try:
        section = _Fields(ctx, _mapping(ctx, node, where), where)
    except _Missing:
        return {}
    result: dict[str, T] = {}
    for name, (key_node, value) in section.items.items():
        if not _NAME.match(name):
            ctx.report(key_node, f"{where}: bad name {name!r}")
        with contextlib.suppress(_Missing):
            result[name] = read(name, value)
    return result


# --- entry point -----------------------------------------------------------------------------


def _need_or(f: _Fields, key: str, default: str) -> str:
    try:
        return f.need(key, _str)
    except _Missing:
        return default


def load_flow_text(text: str, file: str = "<flow>") -> tuple[Flow | None, list[Problem]]:
    """Parse a flow; return it (``None`` if it has no usable shape) and every problem found."""
    ctx = _Context(file)
    try:
        root = yaml.compose(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else 1
        ctx.report(line, f"YAML syntax error: {err.problem or err}")
        return None, ctx.problems
    if not isinstance(root, MappingNode):
        ctx.report(root or 1, "a flow file must be a mapping with 'name', 'start' and 'steps'")
        return None, ctx.problems
    top = _Fields(ctx, root, "flow")
    top.check_keys(TOP_KEYS)
    name = _need_or(top, "name", "")
    start = StepId(_need_or(top, "start", ""))
    start_line = top.key_line("start")
    language = top.get("language", _str) or "en"
    top.get("description", _str)
    try:
        steps_map = _Fields(ctx, top.need("steps", _mapping), "'steps'")
    except _Missing:
        return None, sorted(ctx.problems, key=lambda p: p.line)
    prompts = _section(ctx, top, "prompts", lambda n, v: _read_prompt(ctx, n, v, language))
    calendars = _section(ctx, top, "calendars", lambda n, v: _read_calendar(ctx, n, v))
    steps: dict[StepId, Step] = {}
    invalid: dict[StepId, int] = {}
    for step_name, (key_node, value) in steps_map.items.items():
        step_id = StepId(step_name)
        if not _NAME.match(step_name):
            ctx.report(key_node, f"bad step name {step_name!r}")
        try:
            steps[step_id] = _read_step(ctx, step_id, _line(key_node), value, frozenset(calendars))
        except _Missing:
            invalid[step_id] = _line(key_node)
    flow = Flow(
        name=name,
        file=file,
        start=start,
        start_line=start_line,
        language=language,
        steps=steps,
        prompts=prompts,
        calendars=calendars,
        refs=tuple(ctx.refs),
        prompt_refs=tuple(ctx.prompt_refs),
        invalid_steps=invalid,
    )
    return flow, sorted(ctx.problems, key=lambda p: p.line)
