"""Unit tests of the AMI event translation (acd.protocol.ami_events) on the recorded traces."""

from __future__ import annotations

from typing import TypeVar

import pytest

from acd.domain import pbx_events as ev
from acd.protocol.ami import AmiDecoder, AmiMessage, AmiProtocolError
from acd.protocol.ami_events import (
    CHANNEL_BLOCK,
    EVENT_DECODERS,
    MalformedEventError,
    decode_event,
)
from tests.traces import stream, trace_names

AMI_TRACES = trace_names(".ami.jsonl")
E = TypeVar("E")


def event_messages(name: str) -> list[AmiMessage]:
    decoder = AmiDecoder()
    decoder.receive_data(stream(f"{name}.ami.jsonl", "in"))
    decoder.receive_data(b"")
    out = []
    while (item := decoder.next_event()) is not None:
        if isinstance(item, AmiMessage) and item.event is not None:
            out.append(item)
    return out


def events(name: str) -> list[ev.PbxEvent]:
    return [decode_event(m) for m in event_messages(name)]


def of_type(name: str, cls: type[E]) -> list[E]:
    return [e for e in events(name) if isinstance(e, cls)]


def message(*headers: tuple[str, str]) -> AmiMessage:
    return AmiMessage(tuple(headers))


def channel_block(prefix: str = "", **overrides: str) -> list[tuple[str, str]]:
    values = {
        "Channel": "Local/main@trace-ivr-00000000;2",
        "ChannelState": "6",
        "ChannelStateDesc": "Up",
        "CallerIDNum": "+15551230001",
        "CallerIDName": "Alice",
        "ConnectedLineNum": "<unknown>",
        "ConnectedLineName": "<unknown>",
        "Language": "en",
        "AccountCode": "",
        "Context": "trace-ivr",
        "Exten": "main",
        "Priority": "2",
        "Uniqueid": "1795331282.1",
        "Linkedid": "1795331282.0",
    }
    values.update(overrides)
    return [(prefix + k, v) for k, v in values.items() if v != "<drop>"]


# --- every recorded event -----------------------------------------------------------------


@pytest.mark.parametrize("name", AMI_TRACES)
def test_every_event_of_every_trace_decodes_to_its_typed_class_or_unknown(name: str) -> None:
    for msg in event_messages(name):
        event = decode_event(msg)
        if msg.event in EVENT_DECODERS:
            assert type(event).__name__ == msg.event
        else:
            assert event == ev.UnknownEvent(
                name=str(msg.event), fields=tuple(h for h in msg.headers if h[0] != "Event")
            )


def test_every_typed_class_is_named_after_its_asterisk_event() -> None:
    for name in EVENT_DECODERS:
        assert getattr(ev, name).__name__ == name


# --- facts from the traces README ---------------------------------------------------------


def test_ivr_dtmf_menu_digits_arrive_as_received_dtmf_end_of_100_ms_without_dtmf_begin() -> None:
    ends = of_type("ivr-dtmf-menu", ev.DTMFEnd)

    assert ends
    assert {e.direction for e in ends} == {"Received"}
    raw = [m for m in event_messages("ivr-dtmf-menu") if m.event == "DTMFEnd"]
    assert [e.duration_ms for e in ends] == [int(m["DurationMs"]) for m in raw]
    assert {e.channel.name for e in ends} == {"Local/main@trace-ivr-00000000;2"}
    assert "9" in [e.digit for e in ends]  # the deliberately lost digit
    assert of_type("ivr-dtmf-menu", ev.DTMFBegin) == []


def test_dtmf_sent_without_receive_shows_begin_and_end_on_the_other_half() -> None:
    [begin] = of_type("ami-actions", ev.DTMFBegin)[:1]

    assert begin.direction == "Received"
    assert begin.channel.name == "Local/hold@trace-calls-00000002;1"
    assert begin.channel.unique_id == "trace-hold-1"


def test_the_originate_dial_has_no_caller_channel_and_the_ivr_dial_has_one() -> None:
    originate_dial, agent_dial = of_type("agent-dial", ev.DialBegin)

    assert originate_dial.channel is None
    assert originate_dial.dest.name == "Local/agent@trace-ivr-00000000;1"
    assert originate_dial.dial_string == "agent@trace-ivr"
    assert agent_dial.channel is not None
    assert agent_dial.channel.name == "Local/agent@trace-ivr-00000000;2"
    assert agent_dial.dest.name == "Local/1001@trace-agents-00000001;1"
    assert agent_dial.dial_string == "1001@trace-agents"
    assert [e.dial_status for e in of_type("agent-dial", ev.DialEnd)] == ["ANSWER", "ANSWER"]
    assert {e.forward for e in of_type("agent-dial", ev.DialEnd)} == {""}


def test_dial_outcomes_noanswer_ringing_and_busy_are_reported() -> None:
    assert "RINGING" in [e.dial_status for e in of_type("agent-dial-noanswer", ev.DialState)]
    assert "NOANSWER" in [e.dial_status for e in of_type("agent-dial-noanswer", ev.DialEnd)]
    assert "BUSY" in [e.dial_status for e in of_type("agent-dial-busy", ev.DialEnd)]


def test_agent_dial_hangups_carry_normal_clearing_and_the_busy_agent_cause_17() -> None:
    hangups = of_type("agent-dial", ev.Hangup)

    assert hangups
    assert {(h.cause, h.cause_txt) for h in hangups} == {(16, "Normal Clearing")}
    assert (17, "User busy") in {
        (h.cause, h.cause_txt) for h in of_type("agent-dial-busy", ev.Hangup)
    }


def test_hangup_requests_come_before_the_hangup_and_carry_the_cause() -> None:
    kinds = [
        type(e).__name__
        for e in events("agent-dial")
        if isinstance(e, ev.HangupRequest | ev.SoftHangupRequest | ev.Hangup)
    ]

    assert kinds.index("HangupRequest") < kinds.index("Hangup")
    assert {e.cause for e in of_type("agent-dial", ev.HangupRequest)} == {16}


def test_a_global_varset_has_no_channel() -> None:
    [global_var] = [e for e in of_type("ami-reconnect", ev.VarSet) if e.channel is None]

    assert global_var == ev.VarSet(
        channel=None, variable="FASTAGI_URL", value="agi://127.0.0.1:4573/ivr"
    )
    assert ev.VarSet(channel=None, variable="TRACE_GLOBAL", value="g1") in events("ami-actions")


def test_agi_status_is_visible_as_a_channel_varset() -> None:
    statuses = [
        e.value for e in of_type("ivr-missing-prompt", ev.VarSet) if e.variable == "AGISTATUS"
    ]

    assert statuses == ["FAILURE"]


def test_unknown_caller_ids_become_empty_strings_in_the_snapshot() -> None:
    first = of_type("agent-dial", ev.Newchannel)[0].channel

    assert first == ev.ChannelSnapshot(
        name="Local/agent@trace-ivr-00000000;1",
        unique_id="1795331323.0",
        linked_id="1795331323.0",
        state=0,
        state_desc="Down",
        caller_id_num="",
        caller_id_name="",
        connected_line_num="",
        connected_line_name="",
        language="en",
        account_code="",
        context="trace-ivr",
        exten="agent",
        priority=1,
    )


def test_one_linked_id_groups_every_channel_of_a_call() -> None:
    linked = {e.channel.linked_id for e in of_type("agent-dial", ev.Newchannel)}

    assert linked == {"1795331323.0"}


def test_local_bridge_links_the_two_halves_with_optimization() -> None:
    [bridge] = of_type("agent-dial", ev.LocalBridge)[:1]

    assert bridge.local_one.name.endswith(";1")
    assert bridge.local_two.name.endswith(";2")
    assert bridge.local_one.state_desc == "Down"
    assert bridge.local_two.state_desc == "Ring"
    assert int(bridge.local_two.unique_id.split(".")[1]) == (
        int(bridge.local_one.unique_id.split(".")[1]) + 1
    )
    assert bridge.local_optimization is True
    assert (bridge.context, bridge.exten) == ("trace-ivr", "agent")


def test_originate_responses_report_success_and_failure() -> None:
    by_id = {e.action_id: e for e in of_type("ami-actions", ev.OriginateResponse)}

    failed = by_id["originate-fail-async"]
    assert failed.response == "Failure"
    assert failed.reason == 0
    assert failed.unique_id is None
    assert failed.channel_name == "Local/nosuch@no-such-context"
    held = by_id["originate-hold"]
    assert held.response == "Success"
    assert held.reason == 4
    assert held.unique_id == "trace-hold-1"
    assert (held.application, held.app_data) == ("Wait", "120")
    assert (held.caller_id_num, held.caller_id_name) == ("+15551230001", "Alice")


def test_an_originate_to_a_context_reports_context_and_exten() -> None:
    [response] = of_type("audiosocket-audio", ev.OriginateResponse)

    assert (response.context, response.exten, response.application) == ("trace-caller", "play", "")


def test_bridge_events_carry_the_bridge_and_the_channel() -> None:
    created = of_type("agent-dial", ev.BridgeCreate)[0].bridge
    enters = of_type("agent-dial", ev.BridgeEnter)

    assert created.type == "basic"
    assert created.technology == "simple_bridge"
    assert (created.creator, created.name) == ("", "")
    assert created.num_channels == 0
    assert created.video_source_mode == "none"
    assert {e.bridge.unique_id for e in enters} == {created.unique_id}
    assert [e.bridge.num_channels for e in enters] == [1, 2]
    assert len(of_type("agent-dial", ev.BridgeLeave)) == 2
    assert len(of_type("agent-dial", ev.BridgeDestroy)) == 1


def test_agi_exec_events_pair_commands_by_command_id() -> None:
    starts = of_type("ivr-dtmf-menu", ev.AGIExecStart)
    ends = of_type("ivr-dtmf-menu", ev.AGIExecEnd)

    assert [s.command_id for s in starts] == [e.command_id for e in ends]
    assert ends[0].command == "ANSWER"
    assert (ends[0].result_code, ends[0].result) == (200, "Success")


def test_fully_booted_decodes_the_same_in_both_header_orders() -> None:
    at_login = of_type("ami-login", ev.FullyBooted)
    broadcast = of_type("ami-reconnect", ev.FullyBooted)

    assert at_login == [ev.FullyBooted(status="Fully Booted", uptime=0, last_reload=0)]
    assert broadcast == at_login


def test_shutdown_says_cleanly_without_restart() -> None:
    assert of_type("ami-shutdown", ev.Shutdown) == [ev.Shutdown(shutdown="Cleanly", restart=False)]


def test_status_list_items_decode_despite_the_capital_privilege_class() -> None:
    statuses = of_type("ami-actions", ev.Status)
    [one] = [s for s in statuses if s.action_id == "status-one"]

    assert len(statuses) == 7
    assert one.channel.name == "Local/hold@trace-calls-00000002;2"
    assert one.type == "Local"
    assert one.seconds is not None
    assert [c.list_items for c in of_type("ami-actions", ev.StatusComplete)] == [6, 1]


def test_core_show_channel_shows_the_agent_leg_in_appdial() -> None:
    items = of_type("ami-actions", ev.CoreShowChannel)
    [agent_one] = [c for c in items if c.channel.name == "Local/1004@trace-agents-00000001;1"]

    assert (agent_one.application, agent_one.application_data) == ("AppDial", "(Outgoing Line)")
    assert agent_one.channel.caller_id_num == "bcall"
    assert agent_one.action_id == "coreshowchannels-1"
    assert [c.list_items for c in of_type("ami-actions", ev.CoreShowChannelsComplete)] == [6, 0]


def test_mixmonitor_mute_on_then_off() -> None:
    mutes = of_type("ami-actions", ev.MixMonitorMute)

    assert [(m.direction, m.state) for m in mutes] == [("both", True), ("both", False)]
    assert len(of_type("ami-actions", ev.MixMonitorStart)) == 1
    assert len(of_type("ami-actions", ev.MixMonitorStop)) == 1


def test_chanspy_names_spyer_and_spyee() -> None:
    [start] = of_type("ami-actions", ev.ChanSpyStart)

    assert start.spyer.name == "Local/sup@trace-calls-00000005;1"
    assert start.spyee.name == "Local/1004@trace-agents-00000001;1"
    assert start.spyer.linked_id != start.spyee.linked_id


def test_hangup_by_regex_lists_the_channels_hung_up() -> None:
    hung = of_type("ami-actions", ev.ChannelHungup)

    assert len(hung) == 4
    assert {h.action_id for h in hung} == {"hangup-regex"}


def test_user_event_keeps_its_own_fields_and_action_id() -> None:
    assert of_type("ami-login-events-off", ev.UserEvent) == [
        ev.UserEvent(
            channel=None, name="TraceTest", fields=(("Foo", "bar"),), action_id="userevent-1"
        )
    ]


def test_a_user_event_from_the_dialplan_carries_its_channel_apart_from_its_fields() -> None:
    msg = message(
        ("Event", "UserEvent"),
        ("Privilege", "user,all"),
        *channel_block(),
        ("UserEvent", "IvrChoice"),
        ("Choice", "1"),
    )

    event = decode_event(msg)

    assert isinstance(event, ev.UserEvent)
    assert event.channel is not None
    assert event.channel.unique_id == "1795331282.1"
    assert event.fields == (("Choice", "1"),)
    assert event.action_id is None


def test_queue_call_events_join_connect_and_complete() -> None:
    [join] = of_type("queue-call", ev.QueueCallerJoin)
    [connect] = of_type("queue-call", ev.AgentConnect)
    [complete] = of_type("queue-call", ev.AgentComplete)
    statuses = [s.member.status for s in of_type("queue-call", ev.QueueMemberStatus)]

    assert (join.queue, join.position, join.count) == ("support", 1, 1)
    assert connect.dest.name == "Local/1001@trace-agents-00000001;1"
    assert connect.member_name == "Agent1001"
    assert (complete.reason, complete.talk_time, complete.hold_time) == ("agent", 3, 0)
    assert statuses == [2, 1]


def test_queue_abandon_events_ring_no_answer_and_abandon() -> None:
    [no_answer] = of_type("queue-abandon", ev.AgentRingNoAnswer)
    [abandon] = of_type("queue-abandon", ev.QueueCallerAbandon)

    assert no_answer.ring_time_ms == 15000
    assert no_answer.interface == "Local/1002@trace-agents/n"
    assert (abandon.position, abandon.original_position, abandon.hold_time) == (1, 1, 19)
    assert len(of_type("queue-abandon", ev.AgentCalled)) == 2
    assert len(of_type("queue-abandon", ev.QueueCallerLeave)) == 1


def test_queue_member_pause_reports_the_reason() -> None:
    pauses = [e.member for e in of_type("ami-actions", ev.QueueMemberPause)]

    assert [(p.paused, p.paused_reason) for p in pauses] == [(True, "lunch"), (False, "")]
    assert pauses[0].interface == "Local/1005@trace-agents/n"
    assert pauses[0].penalty == 1


def test_events_without_a_typed_class_keep_all_their_headers() -> None:
    cdrs = [e for e in events("agent-dial") if isinstance(e, ev.UnknownEvent) and e.name == "Cdr"]

    assert cdrs
    assert cdrs[0].fields[0] == ("Privilege", "cdr,all")
    assert ("Disposition", "ANSWERED") in cdrs[0].fields
    assert decode_event(message(("Event", "Brand New"), ("X", "1"))) == ev.UnknownEvent(
        name="Brand New", fields=(("X", "1"),)
    )


# --- malformed events ---------------------------------------------------------------------


def test_a_non_integer_channel_state_names_the_event_and_header() -> None:
    msg = message(("Event", "Newstate"), *channel_block(ChannelState="Up"))

    with pytest.raises(MalformedEventError, match="ChannelState") as err:
        decode_event(msg)
    assert (err.value.event, err.value.header) == ("Newstate", "ChannelState")
    assert isinstance(err.value, AmiProtocolError)


@pytest.mark.parametrize("header", CHANNEL_BLOCK[1:])
def test_a_channel_block_missing_any_header_is_malformed(header: str) -> None:
    msg = message(("Event", "Newchannel"), *channel_block(**{header: "<drop>"}))

    with pytest.raises(MalformedEventError) as err:
        decode_event(msg)
    assert err.value.header == header


def test_a_missing_dest_uniqueid_is_reported_with_its_prefix() -> None:
    msg = message(
        ("Event", "DialBegin"),
        *channel_block(),
        *channel_block("Dest", Uniqueid="<drop>"),
        ("DialString", "1001@trace-agents"),
    )

    with pytest.raises(MalformedEventError) as err:
        decode_event(msg)
    assert (err.value.event, err.value.header) == ("DialBegin", "DestUniqueid")


def test_a_hangup_without_cause_and_a_bad_boolean_are_malformed() -> None:
    with pytest.raises(MalformedEventError, match="Cause"):
        decode_event(message(("Event", "Hangup"), *channel_block()))
    with pytest.raises(MalformedEventError, match="Restart"):
        decode_event(message(("Event", "Shutdown"), ("Shutdown", "Cleanly"), ("Restart", "maybe")))


def test_decoding_a_response_is_a_protocol_error() -> None:
    with pytest.raises(AmiProtocolError, match="Event"):
        decode_event(message(("Response", "Success"), ("ActionID", "a")))
