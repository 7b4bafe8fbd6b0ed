"""Outbound messages: threading headers, loop headers, Outlook Thread-Index, pure round trip."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from tickets.email.loops import LOOP_HEADER, AutoKind, classify
from tickets.email.parse import parse_message
from tickets.email.smtp_out import (
    OutboundIdentity,
    OutboundKind,
    ThreadContext,
    build_message,
    conversation_guid,
    thread_index,
)
from tickets.email.threading import (
    MatchedBy,
    ReplyTokenSigner,
    TicketState,
    TicketSummary,
    decide,
    gather_clues,
)

SIGNER = ReplyTokenSigner(b"unit-test-secret-0123456789")
IDENTITY = OutboundIdentity(domain="help.test", address="support@help.test", loop_id="node-1")
OPENED = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
NOW = OPENED + timedelta(hours=3)
FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)  # [MS-DTYP] 2.3.3


def _thread(parent: str | None = "c1@example.org", refs: tuple[str, ...] = ()) -> ThreadContext:
    return ThreadContext(42, "Re: Printer on fire", OPENED, parent, refs)


def test_acknowledgement_carries_threading_and_loop_headers() -> None:
    out = build_message(IDENTITY, SIGNER, _thread(), ("alice@example.org",), "We got it.", now=NOW)
    msg = out.message
    assert msg["Message-ID"] == f"<{out.message_id}>"
    assert out.message_id.endswith("@help.test")
    assert SIGNER.verify_message_id(out.message_id) == 42
    assert msg["In-Reply-To"] == "<c1@example.org>"
    assert msg["References"] == "<c1@example.org>"
    assert msg["Subject"] == "Re: [#42] Printer on fire"
    assert msg["Thread-Topic"] == "Printer on fire"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg[LOOP_HEADER] == "node-1"
    assert f"support+t{SIGNER.token(42)}@help.test" in str(msg["Reply-To"])
    assert out.envelope_sender == ""  # RFC 3834: automatic responses use the null path


def test_notification_without_parent_is_auto_generated_and_agent_reply_has_no_auto_header() -> None:
    note = build_message(IDENTITY, SIGNER, _thread(None), ("a@x",), "status", now=NOW)
    assert note.message["Auto-Submitted"] == "auto-generated"
    assert note.message["In-Reply-To"] is None
    reply = build_message(
        IDENTITY, SIGNER, _thread(), ("a@x",), "hi", kind=OutboundKind.AGENT_REPLY, now=NOW
    )
    assert reply.message["Auto-Submitted"] is None
    assert reply.message[LOOP_HEADER] == "node-1"
    assert reply.envelope_sender == "support@help.test"


def test_references_keep_the_root_and_the_newest_ids() -> None:
    refs = tuple(f"r{i}@x" for i in range(40))
    out = build_message(IDENTITY, SIGNER, _thread("p@x", refs), ("a@x",), "b", now=NOW)
    ids = str(out.message["References"]).split()
    assert ids[0] == "<r0@x>"
    assert ids[-1] == "<p@x>"
    assert len(ids) == 20


def test_thread_index_shares_the_ticket_guid_and_adds_one_response_level() -> None:
    guid = conversation_guid("help.test", 42)
    root = base64.b64decode(thread_index(guid, OPENED, None))
    reply = base64.b64decode(thread_index(guid, OPENED, NOW))
    assert len(root) == 22
    assert len(reply) == 27
    assert root[0] == 1
    assert root == reply[:22]
    assert root[6:22] == guid.bytes
    level = int.from_bytes(reply[22:], "big")
    assert level >> 39 == 0  # delta code: short delta
    # the delta from the header's (truncated) start to NOW, in 100 ns units, 18 low bits dropped
    start_ticks = (OPENED - FILETIME_EPOCH) // timedelta(microseconds=1) * 10 >> 24 << 24
    now_ticks = (NOW - FILETIME_EPOCH) // timedelta(microseconds=1) * 10
    assert (level >> 8) & 0x7FFFFFFF == ((now_ticks - start_ticks) >> 18) & 0x7FFFFFFF


def test_our_message_coming_back_is_a_loop_and_a_reply_to_it_threads() -> None:
    out = build_message(IDENTITY, SIGNER, _thread(), ("alice@example.org",), "Ack", now=NOW)
    echoed = parse_message(out.message.as_bytes())
    verdict = classify(echoed, envelope_sender="", loop_id="node-1")
    assert verdict.kind is AutoKind.OWN_LOOP
    assert not verdict.notify

    reply = (
        "From: alice@example.org\r\nTo: support@help.test\r\nSubject: Re: whatever\r\n"
        f"In-Reply-To: <{out.message_id}>\r\n\r\nthanks\r\n"
    ).encode()
    clues = gather_clues(parse_message(reply), (), SIGNER)
    assert clues.signed_numbers == (42,)
    ticket = TicketSummary(42, TicketState.OPEN, frozenset({"alice@example.org"}))
    decision = decide(clues, {}, {42: ticket}, NOW)
    assert (decision.ticket_number, decision.matched_by) == (42, MatchedBy.REPLY_TOKEN)
