"""Reply threading: references, signed tokens, subject tags, closed and merged tickets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter.config import SettingsError, load_settings
from tickets.email import EmailConfigError
from tickets.email.parse import ParsedMessage, parse_message
from tickets.email.threading import (
    TOKEN_SECRET_ENV,
    MatchedBy,
    ReplyTokenSigner,
    ThreadAction,
    ThreadDecision,
    TicketState,
    TicketSummary,
    body_marker,
    decide,
    gather_clues,
    merge_targets,
)

SIGNER = ReplyTokenSigner(b"unit-test-secret-0123456789")
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ALICE = "alice@example.org"


def _message(
    *,
    sender: str = ALICE,
    subject: str = "help",
    in_reply_to: str = "",
    references: str = "",
    body: str = "text",
    to: str = "support@help.test",
    message_id: str = "<new@example.org>",
) -> ParsedMessage:
    headers = f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {message_id}\r\n"
    if in_reply_to:
        headers += f"In-Reply-To: {in_reply_to}\r\n"
    if references:
        headers += f"References: {references}\r\n"
    return parse_message(headers.encode() + b"\r\n" + body.encode() + b"\r\n")


def _decide(
    message: ParsedMessage,
    tickets: list[TicketSummary],
    message_ids: dict[str, int] | None = None,
    recipients: tuple[str, ...] = (),
) -> ThreadDecision:
    clues = gather_clues(message, recipients, SIGNER)
    by_number = {t.number: t for t in tickets}
    by_mid = {mid: by_number[n] for mid, n in (message_ids or {}).items()}
    return decide(clues, by_mid, by_number, NOW)


OPEN_7 = TicketSummary(7, TicketState.OPEN, frozenset({ALICE}))


def test_given_in_reply_to_our_message_then_reply_appends_to_that_ticket() -> None:
    decision = _decide(_message(in_reply_to="<n1@help.test>"), [OPEN_7], {"n1@help.test": 7})
    assert (decision.action, decision.ticket_number) == (ThreadAction.APPEND, 7)
    assert decision.matched_by is MatchedBy.REFERENCES
    assert decision.sender_is_participant


def test_given_references_truncated_to_the_root_then_reply_still_threads() -> None:
    # The client kept only the thread root; In-Reply-To names a CC's mail we never saw.
    message = _message(in_reply_to="<colleague@elsewhere>", references="<root@help.test>")
    decision = _decide(message, [OPEN_7], {"root@help.test": 7})
    assert (decision.action, decision.ticket_number) == (ThreadAction.APPEND, 7)


def test_given_newest_reference_known_then_it_wins_over_an_older_one() -> None:
    message = _message(references="<old@help.test> <newer@help.test>")
    other = TicketSummary(8, TicketState.OPEN, frozenset({ALICE}))
    decision = _decide(message, [OPEN_7, other], {"old@help.test": 7, "newer@help.test": 8})
    assert decision.ticket_number == 8


def test_given_our_signed_message_id_unknown_to_the_store_then_signature_threads_it() -> None:
    mid = SIGNER.message_id(7, "abc123", "help.test")
    decision = _decide(_message(in_reply_to=f"<{mid}>"), [OPEN_7])
    assert (decision.ticket_number, decision.matched_by) == (7, MatchedBy.REPLY_TOKEN)


def test_given_signed_token_in_reply_to_plus_address_then_reply_threads() -> None:
    to = f"support+t{SIGNER.token(7)}@help.test"
    decision = _decide(_message(to=to), [OPEN_7])
    assert (decision.ticket_number, decision.matched_by) == (7, MatchedBy.REPLY_TOKEN)


def test_given_signed_token_only_in_envelope_recipient_then_reply_threads() -> None:
    recipients = (f"support+t{SIGNER.token(7)}@help.test",)
    decision = _decide(_message(), [OPEN_7], recipients=recipients)
    assert decision.ticket_number == 7


def test_given_body_marker_then_reply_threads_even_without_headers() -> None:
    body = f"thanks!\n> old text\n> {body_marker(SIGNER, 7)}"
    decision = _decide(_message(body=body), [OPEN_7])
    assert (decision.ticket_number, decision.matched_by) == (7, MatchedBy.REPLY_TOKEN)


def test_given_tampered_token_then_it_is_refused_and_a_new_ticket_is_made() -> None:
    token = SIGNER.token(7)
    forged = token[:-1] + ("0" if token[-1] != "0" else "1")
    renumbered = "8-" + token.split("-", 1)[1]
    for bad in (forged, renumbered):
        decision = _decide(_message(body="{#CC:" + bad + "#}"), [OPEN_7])
        assert decision.action is ThreadAction.NEW_TICKET
        assert "tampered-token-refused" in decision.notes


def test_given_token_signed_with_another_secret_then_it_is_refused() -> None:
    other = ReplyTokenSigner(b"some-other-secret-987654321")
    decision = _decide(_message(body=body_marker(other, 7)), [OPEN_7])
    assert decision.action is ThreadAction.NEW_TICKET


def test_given_subject_tag_from_participant_then_accepted() -> None:
    decision = _decide(_message(subject="Re: [#7] printer"), [OPEN_7])
    assert (decision.ticket_number, decision.matched_by) == (7, MatchedBy.SUBJECT_TAG)


def test_given_subject_tag_from_a_stranger_then_refused_and_new_ticket() -> None:
    decision = _decide(_message(sender="mallory@evil.test", subject="[#7] add me"), [OPEN_7])
    assert decision.action is ThreadAction.NEW_TICKET
    assert decision.ticket_number is None
    assert "subject-tag-refused:7" in decision.notes


def test_given_subject_tag_for_unknown_ticket_then_new_ticket_with_note() -> None:
    decision = _decide(_message(subject="[#99] hello"), [OPEN_7])
    assert decision.action is ThreadAction.NEW_TICKET
    assert "subject-tag-unknown:99" in decision.notes


def test_given_references_from_a_stranger_then_threaded_but_marked_non_participant() -> None:
    message = _message(sender="colleague@example.org", in_reply_to="<n1@help.test>")
    decision = _decide(message, [OPEN_7], {"n1@help.test": 7})
    assert decision.ticket_number == 7
    assert not decision.sender_is_participant


def test_given_reply_to_closed_ticket_then_new_ticket_linked_to_it() -> None:
    closed = TicketSummary(7, TicketState.CLOSED, frozenset({ALICE}))
    decision = _decide(_message(in_reply_to="<n1@help.test>"), [closed], {"n1@help.test": 7})
    assert decision.action is ThreadAction.NEW_TICKET
    assert decision.linked_to == 7
    assert "reply-to-closed:7" in decision.notes


def test_given_reply_to_recently_solved_ticket_then_it_is_reopened() -> None:
    solved = TicketSummary(7, TicketState.SOLVED, frozenset({ALICE}), NOW - timedelta(days=2))
    decision = _decide(_message(subject="[#7] still broken"), [solved])
    assert (decision.action, decision.ticket_number) == (ThreadAction.REOPEN, 7)


def test_given_reply_to_ticket_solved_long_ago_then_new_linked_ticket() -> None:
    solved = TicketSummary(7, TicketState.SOLVED, frozenset({ALICE}), NOW - timedelta(days=30))
    decision = _decide(_message(subject="[#7] again"), [solved])
    assert (decision.action, decision.linked_to) == (ThreadAction.NEW_TICKET, 7)


def test_given_reply_to_merged_ticket_then_it_goes_to_the_survivor() -> None:
    merged = TicketSummary(7, TicketState.MERGED, frozenset({ALICE}), merged_into=9)
    middle = TicketSummary(9, TicketState.MERGED, frozenset(), merged_into=11)
    survivor = TicketSummary(11, TicketState.OPEN, frozenset({ALICE}))
    decision = _decide(
        _message(in_reply_to="<n1@help.test>"), [merged, middle, survivor], {"n1@help.test": 7}
    )
    assert (decision.action, decision.ticket_number) == (ThreadAction.APPEND, 11)
    assert decision.notes == ("redirected-from-merged:7", "redirected-from-merged:9")


def test_given_merge_cycle_then_a_new_linked_ticket_is_made() -> None:
    a = TicketSummary(7, TicketState.MERGED, frozenset({ALICE}), merged_into=9)
    b = TicketSummary(9, TicketState.MERGED, frozenset({ALICE}), merged_into=7)
    decision = _decide(_message(subject="[#7] x"), [a, b])
    assert decision.action is ThreadAction.NEW_TICKET
    assert decision.linked_to in (7, 9)


def test_merge_targets_lists_only_unknown_survivors() -> None:
    merged = TicketSummary(7, TicketState.MERGED, merged_into=9)
    assert merge_targets([merged, OPEN_7], known=[7]) == {9}
    assert merge_targets([merged], known=[9]) == set()


def test_given_same_message_delivered_twice_then_second_is_a_duplicate() -> None:
    decision = _decide(_message(message_id="<dup@example.org>"), [OPEN_7], {"dup@example.org": 7})
    assert decision.duplicate
    assert decision.ticket_number == 7
    closed = TicketSummary(7, TicketState.CLOSED, frozenset({ALICE}))
    again = _decide(_message(message_id="<dup@example.org>"), [closed], {"dup@example.org": 7})
    assert (again.action, again.ticket_number, again.duplicate) == (ThreadAction.APPEND, 7, True)


def test_given_our_own_message_id_on_inbound_then_it_is_not_treated_as_duplicate() -> None:
    mid = SIGNER.message_id(7, "n0nce", "help.test")
    clues = gather_clues(_message(message_id=f"<{mid}>"), (), SIGNER)
    assert clues.own_message_id is None


def test_signer_from_setting_requires_the_secret_and_names_the_settings_variable() -> None:
    assert TOKEN_SECRET_ENV == "CALLCENTER_EMAIL_SECRET"
    with pytest.raises(EmailConfigError, match=TOKEN_SECRET_ENV):
        ReplyTokenSigner.from_setting("")
    with pytest.raises(EmailConfigError, match=TOKEN_SECRET_ENV):
        ReplyTokenSigner.from_setting("short")
    signer = ReplyTokenSigner.from_setting("x" * 32)
    assert "x" * 32 not in repr(signer)
    assert signer.verify_token(*signer.token(7).split("-")) == 7


def test_the_settings_accept_the_signers_variable_and_nothing_else_is_read() -> None:
    loaded = load_settings(environ={TOKEN_SECRET_ENV: "y" * 32})
    assert loaded.email.secret.value == "y" * 32
    with pytest.raises(SettingsError, match=r"email\.token_secret"):
        load_settings(environ={"CALLCENTER_EMAIL_TOKEN_SECRET": "y" * 32})


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=10**12 - 1), st.text("0123456789abcdef", min_size=20))
def test_tokens_verify_only_with_their_own_signature(number: int, other: str) -> None:
    token = SIGNER.token(number)
    text, signature = token.split("-")
    assert SIGNER.verify_token(text, signature) == number
    assert SIGNER.verify_token(text, signature.upper()) == number
    if other[:20] != signature:
        assert SIGNER.verify_token(text, other[:20]) is None
