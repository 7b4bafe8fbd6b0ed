"""Queue statistics from stream entries: definitions, duplicates, order, bad input, live figures."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from acd.domain.call_events import (
    CallAbandoned,
    CallAnswered,
    CallCompleted,
    CallQueued,
    decode_call_event,
    encode_call_event,
)
from acd.domain.stats import Applied, QueueStatistics, StatsConfig


@dataclass(frozen=True)
class Entry:
    event_id: str
    kind: str
    at_ms: int
    fields: dict[str, str] = field(default_factory=dict)


class Stream:
    def __init__(self) -> None:
        self.entries: list[Entry] = []

    def add(self, kind: str, at_s: float, **fields: str | int) -> Entry:
        entry = Entry(
            f"{len(self.entries) + 1}-0",
            kind,
            round(at_s * 1000),
            {k: str(v) for k, v in fields.items()},
        )
        self.entries.append(entry)
        return entry


def call_day() -> Stream:
    """Five calls in queue q: answered in 10 s, answered in 40 s, abandoned at 3 s (short),
    abandoned at 30 s, timed out; plus a callback."""
    s = Stream()
    s.add("AgentLoggedIn", 0, agent="a1", pause="")
    for n, t in enumerate((0, 5, 10, 20, 30, 35), start=1):
        s.add("ItemEnqueued", t, item=f"i{n}", channel="call", queue="q", enq=t * 1000)
    s.add("ItemOffered", 9, item="i1", agent="a1", offer="o1", queue="q")
    s.add("ItemAssigned", 10, item="i1", agent="a1", offer="o1", queue="q")
    s.add("ItemCompleted", 100, item="i1", agent="a1", queue="q", wrap_until=110_000)
    s.add("ItemAssigned", 45, item="i2", agent="a1", offer="o2", queue="q")
    s.add("ItemCancelled", 13, item="i3", queue="q", reason="abandoned")
    s.add("ItemCancelled", 50, item="i4", queue="q", reason="abandoned")
    s.add("ItemCancelled", 90, item="i5", queue="q", reason="timeout")
    s.add("ItemCancelled", 40, item="i6", queue="q", reason="callback")
    return s


def stats_of(entries: list[Entry], **config: float) -> QueueStatistics:
    stats = QueueStatistics(StatsConfig(**config))  # type: ignore[arg-type]
    stats.apply_all(entries)
    return stats


def test_given_a_mix_of_outcomes_when_folded_then_each_definition_holds() -> None:
    total = stats_of(call_day().entries).totals()["q"]
    assert (total.offered, total.answered, total.abandoned) == (6, 2, 2)
    assert (total.short_abandoned, total.timed_out, total.callbacks) == (1, 1, 1)
    assert total.answered_in_sl == 1
    assert total.asa == pytest.approx((10 + 40) / 2)
    # SL with abandons: 1 / (2 answered + 2 abandoned - 1 short + 1 timed out)
    assert total.service_level == pytest.approx(1 / 4)
    assert total.service_level_answered == pytest.approx(1 / 2)
    # Asterisk SL2: (1 answered in 20 s + 1 abandoned in 20 s) / (2 + 2)
    assert total.service_level_asterisk2 == pytest.approx(2 / 4)
    assert total.abandon_rate == pytest.approx(1 / 5)
    assert total.handled == 1
    assert total.aht == pytest.approx(90 + 10)  # talk 90 s + wrap-up 10 s


def test_given_every_entry_twice_when_folded_then_nothing_is_counted_twice() -> None:
    entries = call_day().entries
    stats = stats_of(entries + entries)
    assert stats.duplicates == len(entries)
    assert stats.totals() == stats_of(entries).totals()


def test_given_the_same_fact_in_two_entries_when_folded_then_it_counts_once() -> None:
    s = call_day()
    s.add("ItemEnqueued", 0, item="i1", channel="call", queue="q", enq=0)
    s.add("ItemAssigned", 11, item="i1", agent="a1", offer="o1", queue="q")
    s.add("ItemCancelled", 51, item="i4", queue="q", reason="abandoned")
    assert stats_of(s.entries).totals() == stats_of(call_day().entries).totals()


def test_given_entries_in_any_order_when_folded_then_the_figures_are_the_same() -> None:
    entries = call_day().entries
    expected = stats_of(entries).intervals()
    rng = random.Random(4)
    for _ in range(20):
        shuffled = entries[:]
        rng.shuffle(shuffled)
        assert stats_of(shuffled).intervals() == expected


def test_given_intervals_when_items_arrive_then_they_count_where_they_were_enqueued() -> None:
    intervals = stats_of(call_day().entries, interval=15).intervals()
    assert {key: value.offered for key, value in intervals.items()} == {
        ("q", 0): 3,
        ("q", 1): 1,
        ("q", 2): 2,
    }
    assert intervals[("q", 1)].abandoned == 1  # i4 enqueued at 20 s, abandoned at 50 s


def test_given_malformed_entries_when_folded_then_they_are_rejected_and_the_rest_counts() -> None:
    s = call_day()
    s.add("ItemEnqueued", 1, channel="call", queue="q")  # no item
    s.add("ItemEnqueued", 1, item="bad", queue="q", enq="soon")
    s.add("SomethingElse", 1)
    stats = stats_of(s.entries)
    assert stats.rejected_total == 2
    assert "item" in stats.rejected[0][1]
    assert "'soon'" in stats.rejected[1][1]
    assert stats.totals()["q"].offered == 6


def test_given_call_facts_when_folded_then_answer_talk_and_abandon_wait_come_from_them() -> None:
    s = Stream()
    s.add("CallQueued", 0, item="c1", queue="q", enq=0)
    s.add("CallAnswered", 12, item="c1", queue="q", agent="a1", wait_ms=12_000)
    s.add("ItemAssigned", 13, item="c1", agent="a1", offer="o1", queue="q")
    s.add("CallHeld", 20, item="c1")
    s.add("CallRetrieved", 50, item="c1")
    s.add("CallCompleted", 100, item="c1", queue="q", agent="a1", talk_ms=58_000, wrap_ms=7_000)
    s.add("CallQueued", 0, item="c2", queue="q", enq=0)
    s.add("CallAbandoned", 25, item="c2", queue="q", wait_ms=25_000, cause="abandoned")
    s.add("ItemCancelled", 25, item="c2", queue="q", reason="cancelled")
    total = stats_of(s.entries).totals()["q"]
    assert total.asa == 12
    assert total.answered_in_sl == 1
    assert (total.talk_sum, total.hold_sum, total.wrap_sum) == (58, 30, 7)
    assert total.abandoned == 1
    assert total.average_abandon_wait == 25


def test_given_live_entries_when_asked_now_then_waiting_and_agents_by_state_show() -> None:
    s = Stream()
    for agent in ("a1", "a2", "a3", "a4"):
        s.add("AgentLoggedIn", 0, agent=agent, pause="")
    s.add("AgentPaused", 1, agent="a3", reason="lunch")
    s.add("AgentLoggedOut", 2, agent="a4")
    s.add("ItemEnqueued", 10, item="w1", channel="call", queue="q", enq=10_000)
    s.add("ItemEnqueued", 20, item="w2", channel="call", queue="q", enq=20_000)
    s.add("ItemOffered", 21, item="w1", agent="a1", offer="o1", queue="q")
    s.add("ItemEnqueued", 22, item="w3", channel="call", queue="q", enq=22_000)
    s.add("ItemAssigned", 23, item="w3", agent="a2", offer="o3", queue="q")
    live = stats_of(s.entries).now(40_000)
    assert live.queues["q"].waiting == 2
    assert live.queues["q"].longest_wait == 30
    assert live.agents_by_state == {"logged_out": 1, "on_work": 1, "paused": 1, "reserved": 1}


def test_given_old_finished_items_when_pruned_then_figures_stay_and_late_facts_are_counted() -> (
    None
):
    entries = call_day().entries
    stats = stats_of(entries)
    before = stats.intervals()
    assert stats.prune(before_ms=200_000) == 5  # i2 is still being handled
    assert stats.intervals() == before
    assert (
        stats.apply(Entry("99-0", "ItemCancelled", 300_000, {"item": "i3", "queue": "q"}))
        is Applied.LATE
    )


def test_given_a_call_fact_when_encoded_and_decoded_then_it_round_trips() -> None:
    for event in (
        CallQueued("c1", "q", enq=5, unique_id="1795331359.1"),
        CallAnswered("c1", "q", "a1", wait_ms=3, peer_unique_id="1795331359.2"),
        CallAbandoned("c2", "q", wait_ms=19_000, position=1),
        CallCompleted("c1", "q", "a1", talk_ms=3000, ended_by="agent"),
    ):
        kind, fields = encode_call_event(event)
        assert decode_call_event(kind, fields) == event
    with pytest.raises(ValueError, match="wait_ms"):
        decode_call_event("CallAbandoned", {"item": "c", "queue": "q", "wait_ms": "x"})
    with pytest.raises(ValueError, match="missing field"):
        decode_call_event("CallAnswered", {"item": "c"})


def overflow_day() -> Stream:
    """i1 waits 60 s in support, overflows to sales and is answered 15 s later; i2 overflows at
    40 s and abandons 10 s later in sales; i3 stays in support and is answered."""
    s = Stream()
    s.add("ItemEnqueued", 0, item="i1", channel="call", queue="support", enq=0)
    s.add("ItemEnqueued", 10, item="i2", channel="call", queue="support", enq=10_000)
    s.add("ItemEnqueued", 20, item="i3", channel="call", queue="support", enq=20_000)
    s.add("ItemAssigned", 25, item="i3", agent="a2", offer="o3", queue="support")
    s.add("ItemOverflowed", 50, item="i2", **{"from": "support", "to": "sales"}, reason="overflow")
    s.add("ItemOverflowed", 60, item="i1", **{"from": "support", "to": "sales"}, reason="overflow")
    s.add("ItemCancelled", 60, item="i2", queue="sales", reason="abandoned")
    s.add("ItemAssigned", 75, item="i1", agent="a1", offer="o1", queue="sales")
    return s


def test_given_overflows_then_the_source_counts_them_out_and_the_target_offered_in() -> None:
    stats = QueueStatistics(StatsConfig(interval=3600, threshold=20, short_abandon=0))
    stats.apply_all(overflow_day().entries)
    support, sales = stats.totals()["support"], stats.totals()["sales"]
    assert (support.offered, support.overflowed, support.answered) == (3, 2, 1)
    assert support.overflowed_in == 0
    assert support.ended == 1  # the overflows are not in the service level's denominator
    assert support.service_level == 1.0
    assert (sales.offered, sales.overflowed_in, sales.overflowed) == (2, 2, 0)
    assert (sales.answered, sales.abandoned) == (1, 1)
    assert sales.asa == 15.0  # measured from the move into sales, as Asterisk's second Queue()
    assert sales.average_abandon_wait == 10.0
    assert sales.answered_in_sl == 1


def test_given_overflow_facts_in_any_order_and_repeated_then_the_figures_are_the_same() -> None:
    entries = overflow_day().entries
    expected = QueueStatistics(StatsConfig(interval=3600))
    expected.apply_all(entries)
    rng = random.Random(4)
    for _ in range(20):
        shuffled = entries + [
            Entry(f"r{n}", e.kind, e.at_ms, e.fields) for n, e in enumerate(entries)
        ]
        rng.shuffle(shuffled)
        stats = QueueStatistics(StatsConfig(interval=3600))
        stats.apply_all(shuffled)
        assert stats.totals() == expected.totals()


def test_given_a_waiting_item_that_overflowed_then_it_waits_live_in_the_target_queue() -> None:
    s = Stream()
    s.add("ItemEnqueued", 0, item="i1", channel="call", queue="support", enq=0)
    s.add("ItemOverflowed", 30, item="i1", **{"from": "support", "to": "sales"})
    stats = QueueStatistics()
    stats.apply_all(s.entries)
    live = stats.now(45_000)
    assert set(live.queues) == {"sales"}
    assert live.queues["sales"].longest_wait == 15.0


def test_given_a_malformed_overflow_then_it_is_rejected_and_nothing_else_changes() -> None:
    s = Stream()
    s.add("ItemEnqueued", 0, item="i1", channel="call", queue="support", enq=0)
    bad = s.add("ItemOverflowed", 30, item="i1", **{"from": "support", "to": "support"})
    missing = s.add("ItemOverflowed", 31, item="i1", **{"from": "support"})
    stats = QueueStatistics()
    assert stats.apply(s.entries[0]) is Applied.APPLIED
    assert stats.apply(bad) is Applied.REJECTED
    assert stats.apply(missing) is Applied.REJECTED
    assert stats.totals()["support"].offered == 1
    assert stats.totals()["support"].overflowed == 0


def test_given_overflowed_items_when_pruned_then_both_queues_keep_their_figures() -> None:
    stats = QueueStatistics(StatsConfig(interval=3600, short_abandon=0))
    stats.apply_all(overflow_day().entries)
    before = stats.totals()
    stats.apply(Entry("done-1", "ItemCompleted", 90_000, {"item": "i1", "agent": "a1"}))
    stats.apply(Entry("done-3", "ItemCompleted", 90_000, {"item": "i3", "agent": "a2"}))
    assert stats.prune(10**9) == 3
    after = stats.totals()
    assert after["support"].overflowed == before["support"].overflowed == 2
    assert after["sales"].overflowed_in == 2
    assert after["sales"].answered == 1
