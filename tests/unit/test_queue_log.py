"""queue_log lines as Asterisk 22 app_queue.c writes them, from stream entries (golden lines)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from acd.queue_log import QueueLogTranslator, QueueLogWriter

T0 = 1795331359_000  # the queue-call trace's clock (ms)


@dataclass(frozen=True)
class Entry:
    event_id: str
    kind: str
    at_ms: int
    fields: dict[str, str] = field(default_factory=dict)


def entries(*specs: tuple[str, float, dict[str, str]]) -> list[Entry]:
    return [
        Entry(f"{n}-0", kind, T0 + round(t * 1000), f) for n, (kind, t, f) in enumerate(specs, 1)
    ]


def render(translator: QueueLogTranslator, stream: list[Entry]) -> list[str]:
    return [line.render() for entry in stream for line in translator.lines(entry)]


def answered_call() -> list[Entry]:
    """queue-call.ami.jsonl: Agent1001 answers at once, talks 3 s and hangs up."""
    item = {"item": "i1", "queue": "support"}
    return entries(
        ("AgentLoggedIn", 0, {"agent": "Agent1001", "pause": ""}),
        ("CallQueued", 0, {**item, "unique_id": "1795331359.1"}),
        ("ItemEnqueued", 0, {**item, "channel": "call", "enq": str(T0)}),
        ("ItemOffered", 0, {**item, "agent": "Agent1001", "offer": "o1"}),
        ("CallAnswered", 0, {**item, "agent": "Agent1001", "peer_unique_id": "1795331359.2"}),
        ("ItemAssigned", 0, {**item, "agent": "Agent1001", "offer": "o1"}),
        (
            "CallCompleted",
            3,
            {**item, "agent": "Agent1001", "talk_ms": "3000", "ended_by": "agent"},
        ),
        ("ItemCompleted", 3, {**item, "agent": "Agent1001", "wrap_until": "0"}),
        ("AgentLoggedOut", 4, {"agent": "Agent1001"}),
    )


def test_given_an_answered_call_when_translated_then_the_lines_match_app_queue() -> None:
    assert render(QueueLogTranslator(member_queues=lambda _: ("support",)), answered_call()) == [
        "1795331359|MANAGER|support|Agent1001|ADDMEMBER|",
        "1795331359|1795331359.1|support|NONE|ENTERQUEUE|||1",
        "1795331359|1795331359.1|support|Agent1001|CONNECT|0|1795331359.2|0",
        "1795331362|1795331359.1|support|Agent1001|COMPLETEAGENT|0|3|1",
        "1795331363|MANAGER|support|Agent1001|REMOVEMEMBER|",
    ]


def test_given_a_rung_call_abandoned_when_translated_then_ring_and_abandon_lines() -> None:
    """queue-abandon.ami.jsonl: 15 s ring, no answer, rung again, caller hangs up at 19 s."""
    item = {"item": "i2", "queue": "support"}
    stream = entries(
        ("CallQueued", 0, {**item, "unique_id": "1795331365.1"}),
        ("ItemEnqueued", 0, {**item, "channel": "call", "enq": str(T0)}),
        ("ItemOffered", 0, {**item, "agent": "Agent1002", "offer": "o1"}),
        ("OfferMissed", 15, {**item, "agent": "Agent1002", "offer": "o1", "cause": "no_answer"}),
        ("ItemRequeued", 15, {**item, "agent": "Agent1002", "offer": "o1"}),
        ("ItemOffered", 17, {**item, "agent": "Agent1002", "offer": "o2"}),
        ("ItemCancelled", 19, {**item, "agent": "Agent1002", "offer": "o2", "reason": "abandoned"}),
    )
    assert render(QueueLogTranslator(), stream) == [
        "1795331359|1795331365.1|support|NONE|ENTERQUEUE|||1",
        "1795331374|1795331365.1|support|Agent1002|RINGNOANSWER|15000",
        "1795331378|1795331365.1|support|Agent1002|RINGCANCELED|2000",
        "1795331378|1795331365.1|support|NONE|ABANDON|1|1|19",
    ]


def test_given_waiting_calls_when_they_leave_then_positions_key_timeout_transfer() -> None:
    def q(n: int) -> dict[str, str]:
        return {"item": f"c{n}", "queue": "sales"}

    stream = entries(
        *(
            ("ItemEnqueued", n, {**q(n), "channel": "call", "enq": str(T0 + n * 1000)})
            for n in (1, 2, 3)
        ),
        ("ItemEnqueued", 3, {"item": "chat", "queue": "sales", "channel": "chat"}),
        ("ItemCancelled", 30, {**q(3), "reason": "key:5"}),
        ("ItemCancelled", 40, {**q(2), "reason": "timeout"}),
        ("ItemAssigned", 50, {**q(1), "agent": "a7", "offer": "o9"}),
        (
            "CallTransferred",
            70,
            {**q(1), "agent": "a7", "transfer": "blind", "exten": "200", "context": "internal"},
        ),
        ("AgentPaused", 71, {"agent": "a7", "reason": "lunch"}),
        ("AgentMadeReady", 72, {"agent": "a7"}),
    )
    assert render(QueueLogTranslator(member_name=lambda a: f"Agent/{a}"), stream)[3:] == [
        "1795331389|c3|sales|NONE|EXITWITHKEY|5|3|3|27",
        "1795331399|c2|sales|NONE|EXITWITHTIMEOUT|2|2|38",
        "1795331409|c1|sales|Agent/a7|CONNECT|49||0",  # never rung: no ring time
        "1795331429|c1|sales|Agent/a7|BLINDTRANSFER|200|internal|49|20|1",
        "1795331430|NONE|NONE|Agent/a7|PAUSEALL|lunch",
        "1795331431|NONE|NONE|Agent/a7|UNPAUSEALL|",
    ]


def test_given_repeated_and_malformed_entries_when_translated_then_nothing_is_written_twice() -> (
    None
):
    stream = answered_call()
    translator = QueueLogTranslator()
    first = render(translator, stream)
    assert render(translator, stream) == []
    bad = Entry("99-0", "ItemEnqueued", T0, {"queue": "support"})
    assert translator.lines(bad) == []
    assert translator.rejected == 1
    assert len(first) == 5


def test_given_a_rotated_file_when_writing_then_the_writer_follows_the_new_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "queue_log"
    translator = QueueLogTranslator()
    lines = [line for e in answered_call() for line in translator.lines(e)]
    writer = QueueLogWriter(path)
    assert writer.write(lines[:2]) == 2
    os.rename(path, tmp_path / "queue_log.1")  # logrotate: move, then the writer creates anew
    assert writer.write(lines[2:]) == 3
    writer.close()
    assert (tmp_path / "queue_log.1").read_text().splitlines() == [
        line.render() for line in lines[:2]
    ]
    assert path.read_text().splitlines() == [line.render() for line in lines[2:]]


def test_given_an_overflow_then_the_call_exits_with_timeout_and_enters_the_target_queue() -> None:
    first = {"item": "i1", "queue": "support"}
    second = {"item": "i2", "queue": "support"}
    stream = entries(
        ("CallQueued", 0, {**first, "unique_id": "1795331359.1"}),
        ("ItemEnqueued", 0, {**first, "channel": "call", "enq": str(T0)}),
        ("CallQueued", 1, {**second, "unique_id": "1795331359.3"}),
        ("ItemEnqueued", 1, {**second, "channel": "call", "enq": str(T0 + 1000)}),
        # the second caller moves first: it was second in support, is first in sales
        ("ItemOverflowed", 31, {"item": "i2", "from": "support", "to": "sales", "channel": "call"}),
        ("ItemOverflowed", 31, {"item": "i2", "from": "support", "to": "sales", "channel": "call"}),
        ("ItemOverflowed", 60, {"item": "i1", "from": "support", "to": "sales", "channel": "call"}),
        ("ItemOffered", 65, {"item": "i1", "agent": "Agent1001", "offer": "o1"}),
        ("ItemAssigned", 65, {"item": "i1", "agent": "Agent1001", "offer": "o1"}),
        ("ItemCancelled", 70, {"item": "i2", "reason": "abandoned"}),
    )
    assert render(QueueLogTranslator(), stream) == [
        "1795331359|1795331359.1|support|NONE|ENTERQUEUE|||1",
        "1795331360|1795331359.3|support|NONE|ENTERQUEUE|||2",
        "1795331390|1795331359.3|support|NONE|EXITWITHTIMEOUT|2|2|30",
        "1795331390|1795331359.3|sales|NONE|ENTERQUEUE|||1",
        # the repeated move (another entry id) writes nothing
        # the first caller keeps its place in the fair order: ahead of the second in sales
        "1795331419|1795331359.1|support|NONE|EXITWITHTIMEOUT|1|1|60",
        "1795331419|1795331359.1|sales|NONE|ENTERQUEUE|||1",
        "1795331424|1795331359.1|sales|Agent1001|CONNECT|5||0",
        "1795331429|1795331359.3|sales|NONE|ABANDON|1|1|39",
    ]


def test_given_an_overflow_of_a_chat_or_an_unknown_item_then_nothing_is_written() -> None:
    stream = entries(
        ("ItemEnqueued", 0, {"item": "c1", "queue": "chat", "channel": "chat"}),
        ("ItemOverflowed", 5, {"item": "c1", "from": "chat", "to": "chat2", "channel": "chat"}),
        ("ItemOverflowed", 5, {"item": "nobody", "from": "a", "to": "b", "channel": "call"}),
        ("ItemOverflowed", 5, {"item": "c1"}),
    )
    translator = QueueLogTranslator()
    assert render(translator, stream) == []
