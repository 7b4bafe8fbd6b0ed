"""The agent state machine: the transition table, pending requests, capacity; property tests."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acd.domain.agents import (
    TRANSITIONS,
    Accept,
    AgentCommand,
    AgentCommandRejected,
    AgentId,
    AgentProfile,
    AgentState,
    AgentStatus,
    Capacity,
    Complete,
    InvalidAgentProfile,
    Login,
    Logout,
    Miss,
    MissedEnd,
    Pause,
    Ready,
    Rescind,
    Reserve,
    WrapUpEnd,
    transition,
)
from acd.domain.work import Channel, ItemId, QueueId

VOICE = AgentProfile(AgentId("a1"), {"support": 3})
BLENDED = AgentProfile(
    AgentId("a2"),
    {"support": 3},
    capacity=Capacity(call=1, chat=2, email=1, call_blocks_others=True),
)
Q = QueueId("q")


def run(profile: AgentProfile, *commands: AgentCommand, start: float = 0.0) -> AgentStatus:
    status = AgentStatus()
    for offset, command in enumerate(commands):
        status = transition(profile, status, command, start + offset)
    return status


def reserve(item: str, channel: Channel = Channel.CALL) -> Reserve:
    return Reserve(ItemId(item), channel, Q)


def test_given_a_logged_out_agent_when_it_logs_in_then_it_is_ready() -> None:
    assert run(VOICE, Login()).state is AgentState.READY


def test_given_an_offer_when_answered_completed_with_wrap_up_and_timer_ends_then_ready() -> None:
    status = run(VOICE, Login(), reserve("i1"), Accept(ItemId("i1")))
    assert status.state is AgentState.ON_WORK
    status = transition(VOICE, status, Complete(ItemId("i1"), wrap_up=30), 10)
    assert status.state is AgentState.WRAP_UP
    assert status.active[0].wrap_until == 40
    status = transition(VOICE, status, WrapUpEnd(ItemId("i1")), 40)
    assert status.state is AgentState.READY
    assert status.idle_since == 40


def test_given_an_agent_on_a_call_when_it_pauses_then_the_pause_waits_for_the_end_of_work() -> None:
    status = run(VOICE, Login(), reserve("i1"), Accept(ItemId("i1")), Pause("lunch"))
    assert status.state is AgentState.ON_WORK
    status = transition(VOICE, status, Complete(ItemId("i1"), wrap_up=10), 5)
    assert status.state is AgentState.WRAP_UP  # a pause never cuts a wrap-up short
    status = transition(VOICE, status, WrapUpEnd(ItemId("i1")), 15)
    assert status.state is AgentState.PAUSED
    assert status.pause_reason == "lunch"


def test_given_a_pending_pause_when_the_agent_says_ready_then_the_pause_is_cancelled() -> None:
    status = run(VOICE, Login(), reserve("i1"), Accept(ItemId("i1")), Pause("lunch"), Ready())
    status = transition(VOICE, status, Complete(ItemId("i1")), 9)
    assert status.state is AgentState.READY


def test_given_a_reserved_agent_when_it_logs_out_then_it_is_logged_out_and_holds_nothing() -> None:
    status = run(VOICE, Login(), reserve("i1"), Logout())
    assert status.state is AgentState.LOGGED_OUT
    assert status.reservation is None


def test_given_a_working_agent_when_it_logs_out_then_the_logout_completes_after_work() -> None:
    status = run(BLENDED, Login(), reserve("c1", Channel.CHAT), Accept(ItemId("c1")), Logout())
    assert status.state is AgentState.ON_WORK
    assert status.logout_pending
    assert not status.routable
    status = transition(BLENDED, status, Complete(ItemId("c1")), 10)
    assert status.state is AgentState.LOGGED_OUT


def test_given_a_pending_logout_when_the_agent_logs_in_again_then_it_stays() -> None:
    status = run(VOICE, Login(), reserve("i1"), Accept(ItemId("i1")), Logout(), Login())
    status = transition(VOICE, status, Complete(ItemId("i1")), 10)
    assert status.state is AgentState.READY


def test_given_missed_offers_when_the_limit_is_reached_then_the_agent_is_auto_paused() -> None:
    status = run(VOICE, Login(), reserve("i1"), Miss(ItemId("i1"), cooldown=5, pause_after=2))
    assert status.state is AgentState.MISSED
    assert status.missed_until == 7
    status = transition(VOICE, status, MissedEnd(), 7)
    assert status.state is AgentState.READY
    status = transition(VOICE, status, reserve("i2"), 8)
    status = transition(VOICE, status, Miss(ItemId("i2"), cooldown=5, pause_after=2), 9)
    assert status.state is AgentState.PAUSED
    assert status.pause_reason == "missed-offers"
    assert status.consecutive_misses == 2


def test_given_a_miss_when_the_next_offer_is_answered_then_the_miss_count_resets() -> None:
    status = run(VOICE, Login(), reserve("i1"), Miss(ItemId("i1")), reserve("i2"))
    status = transition(VOICE, status, Accept(ItemId("i2")), 9)
    assert status.consecutive_misses == 0


def test_given_a_rescinded_offer_then_the_agent_is_ready_without_a_miss() -> None:
    status = run(VOICE, Login(), reserve("i1"), Rescind(ItemId("i1")))
    assert status.state is AgentState.READY
    assert status.consecutive_misses == 0


@pytest.mark.parametrize(
    ("commands", "bad"),
    [
        ((), Accept(ItemId("i1"))),
        ((Login(),), Login()),
        ((Login(),), Ready()),
        ((Login(), reserve("i1")), Accept(ItemId("other"))),
        ((Login(), reserve("i1")), reserve("i2")),
        ((Login(), reserve("i1"), Accept(ItemId("i1"))), Complete(ItemId("nope"))),
        ((Login(), Pause("x")), reserve("i1")),
        ((), Logout()),
        ((Login(),), Pause("")),
    ],
)
def test_given_a_state_when_a_command_does_not_fit_then_it_is_rejected(
    commands: tuple[AgentCommand, ...], bad: AgentCommand
) -> None:
    status = run(VOICE, *commands)
    with pytest.raises(AgentCommandRejected):
        transition(VOICE, status, bad, 99)


def test_given_a_call_when_a_chat_could_be_offered_then_the_call_blocks_it() -> None:
    status = run(BLENDED, Login(), reserve("i1"), Accept(ItemId("i1")))
    assert not status.can_take(BLENDED.capacity, Channel.CHAT)
    unblocked = Capacity(call=1, chat=2, call_blocks_others=False)
    assert status.can_take(unblocked, Channel.CHAT)


def test_given_chats_when_capacity_is_reached_then_no_more_chats_are_offered() -> None:
    status = run(
        BLENDED,
        Login(),
        reserve("c1", Channel.CHAT),
        Accept(ItemId("c1")),
        reserve("c2", Channel.CHAT),
        Accept(ItemId("c2")),
    )
    assert not status.can_take(BLENDED.capacity, Channel.CHAT)
    assert status.can_take(BLENDED.capacity, Channel.EMAIL)


def test_given_a_bad_level_when_a_profile_is_made_then_it_is_refused() -> None:
    with pytest.raises(InvalidAgentProfile):
        AgentProfile(AgentId("x"), {"support": 6})
    with pytest.raises(InvalidAgentProfile):
        AgentProfile(AgentId("x"), {"support": 0})


def test_the_table_names_only_known_states() -> None:
    for (state, _), targets in TRANSITIONS.items():
        assert state in AgentState
        assert targets <= set(AgentState)


# -- property tests ------------------------------------------------------------------------------

ITEMS = [ItemId(f"i{n}") for n in range(4)]
#: A blended agent whose call does not block its chats and emails.
UNBLOCKED = AgentProfile(
    AgentId("a3"),
    {"support": 3},
    capacity=Capacity(call=1, chat=2, email=2, call_blocks_others=False),
)

commands = st.one_of(
    st.just(Login()),
    st.just(Logout()),
    st.just(Ready()),
    st.sampled_from([Pause("break"), Pause("lunch")]),
    st.builds(Reserve, st.sampled_from(ITEMS), st.sampled_from(list(Channel)), st.just(Q)),
    st.builds(Accept, st.sampled_from(ITEMS)),
    st.builds(
        Miss,
        st.sampled_from(ITEMS),
        cooldown=st.sampled_from([0.0, 5.0]),
        pause_after=st.integers(0, 3),
    ),
    st.builds(Rescind, st.sampled_from(ITEMS)),
    st.builds(Complete, st.sampled_from(ITEMS), wrap_up=st.sampled_from([0.0, 10.0])),
    st.builds(WrapUpEnd, st.sampled_from(ITEMS)),
    st.just(MissedEnd()),
)


def check(profile: AgentProfile, status: AgentStatus) -> None:
    state = status.state
    if state is AgentState.LOGGED_OUT:
        assert status.reservation is None
        assert not status.active
        assert not status.logout_pending
    if state is AgentState.RESERVED:
        assert status.reservation is not None
    if status.reservation is not None:
        assert state is AgentState.RESERVED
        assert status.logged_in
    if state is AgentState.WRAP_UP:
        assert status.active
        assert all(work.wrap_until is not None for work in status.active)
    if state is AgentState.PAUSED:
        assert status.pause_reason
    for channel in Channel:
        assert status.load(channel) <= profile.capacity.of(channel)
    item_ids = [work.item_id for work in status.active]
    if status.reservation is not None:
        item_ids.append(status.reservation.item_id)
    assert len(item_ids) == len(set(item_ids)), "an item held twice"
    if status.logout_pending:
        assert status.busy
    assert (status.busy_since is not None) == status.busy
    assert state is derived_state(status)
    capacity = profile.capacity
    open_channels = tuple(ch for ch in Channel if status.can_take(capacity, ch))
    assert status.open_channels(capacity) == open_channels


def derived_state(status: AgentStatus) -> AgentState:
    """The precedence of the module docstring, spelled out as the reference."""
    if not status.logged_in:
        return AgentState.LOGGED_OUT
    if status.reservation is not None:
        return AgentState.RESERVED
    if any(work.wrap_until is None for work in status.active):
        return AgentState.ON_WORK
    if status.active:
        return AgentState.WRAP_UP
    if status.missed_until is not None:
        return AgentState.MISSED
    if status.pause_reason is not None:
        return AgentState.PAUSED
    return AgentState.READY


@settings(max_examples=300, deadline=None)
@given(
    profile=st.sampled_from([VOICE, BLENDED, UNBLOCKED]),
    sequence=st.lists(commands, max_size=40),
)
def test_random_command_sequences_never_reach_an_invalid_state(
    profile: AgentProfile, sequence: list[AgentCommand]
) -> None:
    status = AgentStatus()
    for step, command in enumerate(sequence):
        before = status
        try:
            status = transition(profile, status, command, float(step))
        except AgentCommandRejected:
            assert status is before
            continue
        assert (before.state, command.kind) in TRANSITIONS
        assert status.state in TRANSITIONS[(before.state, command.kind)]
        check(profile, status)
        if status.state is AgentState.READY and before.state is not AgentState.READY:
            assert status.idle_since == float(step)  # idle from the moment it became ready
        if status.logged_in and before.logged_in and before.busy and not status.busy:
            assert before.busy_since is not None
            assert status.busy_seconds == before.busy_seconds + (step - before.busy_since)
