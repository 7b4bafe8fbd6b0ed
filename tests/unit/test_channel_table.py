"""The live channel table (acd.domain.channels) replaying the recorded Asterisk traces."""

from __future__ import annotations

from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from acd.domain import pbx_events as ev
from acd.domain.channels import ChannelTable, LiveChannel
from acd.protocol.ami import AmiDecoder, AmiMessage
from acd.protocol.ami_events import decode_event
from tests.traces import stream

AGENT = "Local/agent@trace-ivr-00000000;2"
AGENT_PEER = "Local/1001@trace-agents-00000001;1"


@cache
def events(trace: str) -> tuple[ev.PbxEvent, ...]:
    decoder = AmiDecoder()
    decoder.receive_data(stream(f"{trace}.ami.jsonl", "in"))
    decoder.receive_data(b"")
    out: list[ev.PbxEvent] = []
    while (item := decoder.next_event()) is not None:
        if isinstance(item, AmiMessage) and item.event is not None:
            out.append(decode_event(item))
    return tuple(out)


def replay(table: ChannelTable, evs: tuple[ev.PbxEvent, ...] | list[ev.PbxEvent]) -> None:
    for event in evs:
        table.apply(event)


def picture(table: ChannelTable) -> dict[str, LiveChannel]:
    return {c.unique_id: c for c in table}


def snapshot(unique_id: str, name: str = "", state: int = 4) -> ev.ChannelSnapshot:
    return ev.ChannelSnapshot(
        name=name or f"Local/x-{unique_id};1",
        unique_id=unique_id,
        linked_id="1.0",
        state=state,
        state_desc="Ring",
        caller_id_num="",
        caller_id_name="",
        connected_line_num="",
        connected_line_name="",
        language="en",
        account_code="",
        context="c",
        exten="s",
        priority=1,
    )


def bridge(unique_id: str) -> ev.BridgeInfo:
    return ev.BridgeInfo(unique_id, "basic", "simple_bridge", "", "", 1, "none")


# --- agent-dial ---------------------------------------------------------------------------


def test_given_agent_dial_when_fully_replayed_then_every_channel_is_gone() -> None:
    table = ChannelTable()
    replay(table, events("agent-dial"))
    assert len(table) == 0
    assert table.calls() == {}
    assert table.by_name(AGENT) is None


def test_given_agent_dial_when_both_legs_are_bridged_then_the_table_shows_one_call() -> None:
    evs = events("agent-dial")
    second_enter = [i for i, e in enumerate(evs) if isinstance(e, ev.BridgeEnter)][1]
    table = ChannelTable()
    replay(table, evs[: second_enter + 1])

    calls = table.calls()
    assert list(calls) == ["1795331323.0"]
    assert [c.name for c in calls["1795331323.0"]] == [
        "Local/agent@trace-ivr-00000000;1",
        AGENT,
        AGENT_PEER,
        "Local/1001@trace-agents-00000001;2",
    ]
    agent, peer = table.by_name(AGENT), table.by_name(AGENT_PEER)
    assert agent is not None
    assert peer is not None
    assert agent.bridge_id == peer.bridge_id == "04b71b26-87d4-4120-b231-7732158d831c"
    assert agent.dial_peer == peer.unique_id
    assert peer.dial_peer == agent.unique_id
    assert agent.dial_status == peer.dial_status == "ANSWER"
    assert agent.variable("DIALSTATUS") == "ANSWER"
    assert agent.variable("DIALEDPEERNAME") == AGENT_PEER
    assert agent.variable("AGENT_TARGET") is None, "only tracked variables are kept"
    assert agent.snapshot.state_desc == "Up"
    assert table.get(agent.unique_id) == agent


def test_given_agent_dial_when_the_agent_leaves_the_bridge_then_the_caller_is_unbridged() -> None:
    evs = events("agent-dial")
    destroy = next(i for i, e in enumerate(evs) if isinstance(e, ev.BridgeDestroy))
    table = ChannelTable()
    replay(table, evs[:destroy])
    agent = table.by_name(AGENT)
    assert agent is not None
    assert agent.bridge_id is None
    assert agent.variable("BRIDGEPEER") is None, "an empty value unsets the variable"
    assert table.by_name(AGENT_PEER) is None
    assert len(table) == 2


def test_given_an_originate_dial_then_the_dialled_channel_has_no_calling_peer() -> None:
    evs = events("agent-dial")
    first_dial_end = next(i for i, e in enumerate(evs) if isinstance(e, ev.DialEnd))
    table = ChannelTable()
    replay(table, evs[: first_dial_end + 1])
    first = table.by_name("Local/agent@trace-ivr-00000000;1")
    assert first is not None
    assert first.dial_peer is None
    assert first.dial_status == "ANSWER"


def test_given_busy_and_noanswer_dials_then_the_dial_status_is_recorded_until_hangup() -> None:
    for trace, status in (("agent-dial-busy", "BUSY"), ("agent-dial-noanswer", "NOANSWER")):
        evs = events(trace)
        end = next(
            i for i, e in enumerate(evs) if isinstance(e, ev.DialEnd) and e.channel is not None
        )
        table = ChannelTable()
        replay(table, evs[: end + 1])
        callers = [c for c in table if c.name.endswith(";2") and "trace-ivr" in c.name]
        assert [c.dial_status for c in callers] == [status], trace
        replay(table, evs[end + 1 :])
        assert len(table) == 0, trace


# --- ami-actions: reset from CoreShowChannels ---------------------------------------------


def test_given_ami_actions_then_core_show_channels_matches_the_picture_built_from_events() -> None:
    evs = events("ami-actions")
    first = next(i for i, e in enumerate(evs) if isinstance(e, ev.CoreShowChannel))
    complete = next(i for i, e in enumerate(evs) if isinstance(e, ev.CoreShowChannelsComplete))
    items = [e for e in evs[first:complete] if isinstance(e, ev.CoreShowChannel)]
    assert len(items) == 6

    built = ChannelTable()
    replay(built, evs[:first])
    rebuilt = ChannelTable()
    rebuilt.reset(items)

    assert set(picture(rebuilt)) == set(picture(built))
    for item in items:
        from_events = built.get(item.channel.unique_id)
        from_list = rebuilt.get(item.channel.unique_id)
        assert from_events is not None
        assert from_list is not None
        assert from_events.snapshot == from_list.snapshot == item.channel
        assert from_events.bridge_id == from_list.bridge_id == (item.bridge_id or None)
        assert from_list.application == item.application
    assert {k: len(v) for k, v in rebuilt.calls().items()} == {
        "1795331344.0": 4,
        "trace-hold-1": 2,
    }


def test_given_a_stale_table_when_reset_then_only_the_listed_channels_remain() -> None:
    evs = events("ami-actions")
    first = next(i for i, e in enumerate(evs) if isinstance(e, ev.CoreShowChannel))
    items = [e for e in evs if isinstance(e, ev.CoreShowChannel)]
    table = ChannelTable()
    table.apply(ev.Newchannel(snapshot("gone.1")))
    table.reset(items)
    assert table.get("gone.1") is None
    assert len(table) == 6
    # Events that arrived while the list was read, applied again after the reset: no change.
    before = picture(table)
    replay(table, evs[first - 10 : first])
    assert picture(table).keys() == before.keys()


def test_given_ami_actions_when_fully_replayed_then_the_hung_up_calls_are_gone() -> None:
    table = ChannelTable()
    replay(table, events("ami-actions"))
    # The regex Hangup's ChannelHungup items are list items, the Hangup events follow them.
    assert len(table) == 0


def test_given_a_bare_snapshot_list_when_reset_then_channels_have_no_derived_state() -> None:
    table = ChannelTable()
    table.reset([snapshot("1.0"), snapshot("1.1")])
    assert [c.unique_id for c in table] == ["1.0", "1.1"]
    assert all(c.bridge_id is None and c.dial_peer is None for c in table)


# --- idempotence and ordering -------------------------------------------------------------


def test_given_every_event_applied_twice_then_each_step_looks_the_same_as_once() -> None:
    for trace in ("agent-dial", "ami-actions", "queue-call", "queue-abandon"):
        once, twice = ChannelTable(), ChannelTable()
        for event in events(trace):
            once.apply(event)
            twice.apply(event)
            twice.apply(event)
            assert picture(once) == picture(twice), (trace, event)


def test_given_a_duplicate_newchannel_then_the_newer_state_is_kept() -> None:
    table = ChannelTable()
    table.apply(ev.Newchannel(snapshot("1.0", state=0)))
    table.apply(ev.Newstate(snapshot("1.0", state=6)))
    table.apply(ev.Newchannel(snapshot("1.0", state=0)))
    live = table.get("1.0")
    assert live is not None
    assert live.snapshot.state == 6


def test_given_a_hangup_for_an_unknown_channel_then_nothing_happens() -> None:
    table = ChannelTable()
    table.apply(ev.Newchannel(snapshot("1.0")))
    table.apply(ev.Hangup(snapshot("9.9"), 16, "Normal Clearing"))
    assert [c.unique_id for c in table] == ["1.0"]


def test_given_a_hung_up_channel_then_replayed_events_do_not_bring_it_back() -> None:
    table = ChannelTable()
    table.apply(ev.Newchannel(snapshot("1.0")))
    table.apply(ev.Hangup(snapshot("1.0"), 16, "Normal Clearing"))
    table.apply(ev.Newchannel(snapshot("1.0")))
    table.apply(ev.Newstate(snapshot("1.0")))
    table.apply(ev.VarSet(snapshot("1.0"), "DIALSTATUS", "ANSWER"))
    assert len(table) == 0


def test_given_a_channel_appears_without_newchannel_then_any_channel_event_adds_it() -> None:
    table = ChannelTable()
    table.apply(ev.Newstate(snapshot("1.0")))
    assert table.get("1.0") is not None


def test_given_a_late_leave_of_an_earlier_bridge_then_the_newer_bridge_is_kept() -> None:
    table = ChannelTable()
    table.apply(ev.BridgeEnter(bridge("b1"), snapshot("1.0")))
    table.apply(ev.BridgeEnter(bridge("b2"), snapshot("1.0")))
    table.apply(ev.BridgeLeave(bridge("b1"), snapshot("1.0")))
    live = table.get("1.0")
    assert live is not None
    assert live.bridge_id == "b2"


def test_given_a_renamed_channel_then_it_is_found_by_its_new_name_only() -> None:
    table = ChannelTable()
    table.apply(ev.Newchannel(snapshot("1.0", name="PJSIP/a-1")))
    table.apply(ev.Newstate(snapshot("1.0", name="PJSIP/a-1<MASQ>")))
    assert table.by_name("PJSIP/a-1") is None
    live = table.by_name("PJSIP/a-1<MASQ>")
    assert live is not None
    assert live.unique_id == "1.0"


def test_given_global_and_untracked_variables_then_they_are_not_recorded() -> None:
    table = ChannelTable(tracked_variables={"QUEUE_PRIO"})
    table.apply(ev.VarSet(None, "QUEUE_PRIO", "5"))
    table.apply(ev.VarSet(snapshot("1.0"), "DIALSTATUS", "ANSWER"))
    table.apply(ev.VarSet(snapshot("1.0"), "QUEUE_PRIO", "5"))
    live = table.get("1.0")
    assert live is not None
    assert live.variables == (("QUEUE_PRIO", "5"),)


def test_given_few_tombstones_then_the_oldest_are_forgotten() -> None:
    table = ChannelTable(tombstones=2)
    for uid in ("1.0", "1.1", "1.2"):
        table.apply(ev.Hangup(snapshot(uid), 16, ""))
    table.apply(ev.Newstate(snapshot("1.0")))
    table.apply(ev.Newstate(snapshot("1.2")))
    assert [c.unique_id for c in table] == ["1.0"]


# --- properties ---------------------------------------------------------------------------

# One trace at a time: each was recorded after a restart, so channel names repeat across traces
# (which a live Asterisk never does without a restart, and a restart means a reset()).
ONE_TRACE_EVENTS = st.sampled_from(
    ["agent-dial", "agent-dial-busy", "ami-actions", "queue-call", "queue-abandon"]
).flatmap(lambda trace: st.lists(st.sampled_from(events(trace)), max_size=120))


def _is_hangup(event: ev.PbxEvent) -> bool:
    return isinstance(event, ev.Hangup)


@settings(max_examples=300, deadline=None)
@given(ONE_TRACE_EVENTS)
def test_any_order_of_duplicate_events_never_raises_and_a_hangup_always_removes(
    sequence: list[ev.PbxEvent],
) -> None:
    table = ChannelTable()
    replay(table, sequence + sequence[::-1])
    hung_up = {e.channel.unique_id for e in sequence if isinstance(e, ev.Hangup)}
    assert not hung_up & set(picture(table))
    for live in table:
        assert table.by_name(live.name) == live
    assert sum(len(group) for group in table.calls().values()) == len(table)


@settings(max_examples=100, deadline=None)
@given(st.permutations([e for e in events("agent-dial") if not _is_hangup(e)]))
def test_any_order_of_a_calls_events_then_its_hangups_leaves_nothing(
    sequence: list[ev.PbxEvent],
) -> None:
    table = ChannelTable()
    replay(table, sequence)
    replay(table, [e for e in events("agent-dial") if _is_hangup(e)])
    assert len(table) == 0
