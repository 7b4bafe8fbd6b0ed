"""Check a flow as a whole: dangling targets, unreachable steps, loops with no exit, prompts.

``check_flow`` is pure: it takes a loaded ``Flow`` and a predicate telling whether a sound
file exists. ``check_flow_file`` and ``load_checked_flow`` are the thin file-reading wrappers
used by ``callcenter ivr check FILE`` and by the IVR at start and on reload.

The loop rule: a step *exits* if it ends the session (hangup, queue, transfer) or has a
reference to a step that exits. Every reference counts, including ``on_failure`` (so a menu's
retries count as an exit only if they go somewhere). Reachable steps that cannot exit are
reported once per loop, at the line of the loop's first step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from ivr.domain.flow import TERMINAL_STEP_TYPES, Flow, Problem, Ref, StepId, step_type
from ivr.domain.flow_loader import load_flow_text
from ivr.domain.sounds import KNOWN_ASTERISK_SOUNDS, SOUND_EXTENSIONS
from ivr.errors import IvrError


class FlowInvalidError(IvrError):
    """A flow file has problems; ``problems`` lists them with file and line."""

    error_id = "ivr-flow-invalid"

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def _no_sounds(_name: str) -> bool:
    return False


def check_flow(flow: Flow, sound_exists: Callable[[str], bool] = _no_sounds) -> list[Problem]:
    """Every whole-graph problem in ``flow``, sorted by line."""
    problems = [
        *_dangling(flow),
        *_unreachable_and_loops(flow),
        *_missing_prompts(flow, sound_exists),
    ]
    return sorted(problems, key=lambda p: (p.line, p.message))


def _exists(flow: Flow, step: StepId) -> bool:
    return step in flow.steps or step in flow.invalid_steps


def _dangling(flow: Flow) -> Iterable[Problem]:
    if flow.start and not _exists(flow, flow.start):
        yield Problem(flow.file, flow.start_line, f"start step {flow.start!r} does not exist")
    for ref in flow.refs:
        if ref.target and not _exists(flow, ref.target):
            yield Problem(
                flow.file,
                ref.line,
                f"step {ref.source!r}: {ref.label!r} goes to {ref.target!r}, which does not exist",
            )


def _edges(flow: Flow) -> Mapping[StepId, list[Ref]]:
    edges: dict[StepId, list[Ref]] = {}
    for ref in flow.refs:
        if _exists(flow, ref.target):
            edges.setdefault(ref.source, []).append(ref)
    return edges


def _step_line(flow: Flow, step: StepId) -> int:
    found = flow.steps.get(step)
    return found.line if found is not None else flow.invalid_steps.get(step, 1)


def _unreachable_and_loops(flow: Flow) -> Iterable[Problem]:
    edges = _edges(flow)
    reachable: set[StepId] = set()
    todo = [flow.start] if _exists(flow, flow.start) else []
    while todo:
        step = todo.pop()
        if step not in reachable:
            reachable.add(step)
            todo.extend(ref.target for ref in edges.get(step, ()))
    all_steps = set(flow.steps) | set(flow.invalid_steps)
    for step in sorted(all_steps - reachable, key=lambda s: _step_line(flow, s)):
        yield Problem(flow.file, _step_line(flow, step), f"step {step!r} is unreachable")

    # Steps that can exit: terminal steps (and unreadable ones, to avoid a cascade), then
    # everything with a reference to a step that can exit.
    exits = {s for s, st in flow.steps.items() if step_type(st) in TERMINAL_STEP_TYPES}
    exits |= set(flow.invalid_steps)
    changed = True
    while changed:
        changed = False
        for step in all_steps - exits:
            if any(ref.target in exits for ref in edges.get(step, ())):
                exits.add(step)
                changed = True
    # Report each loop once; steps that merely lead into a loop are not loops themselves.
    stuck = reachable - exits
    reported: set[StepId] = set()
    for step in sorted(stuck, key=lambda s: _step_line(flow, s)):
        loop = _loop_through(step, edges, stuck)
        if step in reported or not loop:
            continue
        reported.update(loop)
        names = " -> ".join([*sorted(loop, key=lambda s: _step_line(flow, s)), step])
        message = f"loop without an exit: {names} never reaches a hangup, queue or transfer"
        yield Problem(flow.file, _step_line(flow, step), message)


def _loop_through(
    step: StepId, edges: Mapping[StepId, list[Ref]], within: set[StepId]
) -> set[StepId]:
    """The steps of ``within`` on a cycle through ``step`` (its strongly connected part)."""

    def reach(start: StepId, forward: bool) -> set[StepId]:
        seen: set[StepId] = set()
        todo = [start]
        while todo:
            current = todo.pop()
            if forward:
                nexts = [r.target for r in edges.get(current, ())]
            else:
                nexts = [s for s, refs in edges.items() if any(r.target == current for r in refs)]
            for n in nexts:
                if n in within and n not in seen:
                    seen.add(n)
                    todo.append(n)
        return seen

    return reach(step, True) & reach(step, False)


def _missing_prompts(flow: Flow, sound_exists: Callable[[str], bool]) -> Iterable[Problem]:
    for ref in flow.prompt_refs:
        name = ref.name
        if name in flow.prompts or name in KNOWN_ASTERISK_SOUNDS or sound_exists(name):
            continue
        yield Problem(
            flow.file,
            ref.line,
            f"step {ref.step!r}: prompt {name!r} is neither a text prompt nor a known sound file",
        )


def sound_finder(sounds_dirs: Iterable[Path]) -> Callable[[str], bool]:
    """A predicate: is ``name`` a sound file in one of ``sounds_dirs`` or a language subfolder."""
    dirs = [Path(d) for d in sounds_dirs]

    def exists(name: str) -> bool:
        if not name or name.startswith("/") or ".." in Path(name).parts:
            return False
        for base in dirs:
            for folder in (base, *sorted(p for p in base.glob("*") if p.is_dir())):
                for ext in SOUND_EXTENSIONS:
                    if (folder / f"{name}.{ext}").is_file():
                        return True
        return False

    return exists


def check_flow_text(
    text: str, file: str, sound_exists: Callable[[str], bool] = _no_sounds
) -> tuple[Flow | None, list[Problem]]:
    """Load and check a flow given as text; return the flow and all problems by line."""
    flow, problems = load_flow_text(text, file)
    if flow is not None:
        problems = sorted([*problems, *check_flow(flow, sound_exists)], key=lambda p: p.line)
    return flow, problems


def check_flow_file(path: str | Path, sounds_dirs: Iterable[str | Path] = ()) -> list[Problem]:
    """All problems in the flow file at ``path`` (``callcenter ivr check FILE``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return [Problem(str(path), 1, f"cannot read flow file: {err}")]
    _, problems = check_flow_text(text, str(path), sound_finder(Path(d) for d in sounds_dirs))
    return problems


def load_checked_flow(path: str | Path, sounds_dirs: Iterable[str | Path] = ()) -> Flow:
    """Load a flow file for use, raising ``FlowInvalidError`` if it has any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise FlowInvalidError([Problem(str(path), 1, f"cannot read flow file: {err}")]) from err
    finder = sound_finder(Path(d) for d in sounds_dirs)
    flow, problems = check_flow_text(text, str(path), finder)
    if problems or flow is None:
        raise FlowInvalidError(problems)
    return flow
