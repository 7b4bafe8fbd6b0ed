"""Auto-reply and loop protection: which messages must never be answered automatically."""

from __future__ import annotations

import pytest

from tickets.email.loops import LOOP_HEADER, AutoKind, LoopVerdict, SenderRateLimiter, classify
from tickets.email.parse import parse_message

LOOP_ID = "cc-node-1"


def _verdict(
    headers: str = "", sender: str = "alice@example.org", envelope: str | None = None
) -> LoopVerdict:
    raw = f"From: {sender}\r\nSubject: hello\r\n{headers}\r\nbody\r\n".encode()
    return classify(
        parse_message(raw),
        envelope_sender=sender if envelope is None else envelope,
        loop_id=LOOP_ID,
        own_addresses=frozenset({"support@help.test"}),
    )


def test_given_ordinary_human_mail_then_it_may_be_answered() -> None:
    verdict = _verdict()
    assert verdict.kind is AutoKind.HUMAN
    assert verdict.notify
    assert not verdict.automated


@pytest.mark.parametrize(
    ("headers", "kind", "reason"),
    [
        ("Auto-Submitted: auto-replied\r\n", AutoKind.AUTO_REPLY, "auto-submitted:auto-replied"),
        (
            "Auto-Submitted: auto-generated\r\n",
            AutoKind.AUTO_GENERATED,
            "auto-submitted:auto-generated",
        ),
        (
            "Auto-Submitted: auto-notified; owner-email=x@y\r\n",
            AutoKind.AUTO_GENERATED,
            "auto-submitted:auto-notified",
        ),
        ("X-Autoreply: yes\r\n", AutoKind.AUTO_REPLY, "x-autoreply"),
        ("X-Autorespond: Out of office\r\n", AutoKind.AUTO_REPLY, "x-autorespond"),
        ("Precedence: bulk\r\n", AutoKind.BULK, "precedence:bulk"),
        ("Precedence: junk\r\n", AutoKind.BULK, "precedence:junk"),
        ("Precedence: list\r\n", AutoKind.LIST, "precedence:list"),
        ("List-Id: <users.lists.example.org>\r\n", AutoKind.LIST, "list-id"),
        ("List-Unsubscribe: <mailto:u@x>\r\n", AutoKind.BULK, "list-unsubscribe"),
        ("X-Auto-Response-Suppress: All\r\n", AutoKind.AUTO_GENERATED, "x-auto-response-suppress"),
        (f"{LOOP_HEADER}: {LOOP_ID}\r\n", AutoKind.OWN_LOOP, "loop-header-ours"),
        (f"{LOOP_HEADER}: other-node\r\n", AutoKind.OWN_LOOP, "loop-header"),
        ("X-Loop: support@help.test\r\n", AutoKind.OWN_LOOP, "x-loop-ours"),
        (
            "Content-Type: multipart/report; report-type=delivery-status\r\n",
            AutoKind.BOUNCE,
            "delivery-report",
        ),
    ],
)
def test_given_automation_header_then_not_answered(
    headers: str, kind: AutoKind, reason: str
) -> None:
    verdict = _verdict(headers)
    assert verdict.kind is kind
    assert reason in verdict.reasons
    assert not verdict.notify


def test_given_auto_submitted_no_then_it_is_human() -> None:
    assert _verdict("Auto-Submitted: no\r\n").notify


@pytest.mark.parametrize(
    ("sender", "kind"),
    [
        ("MAILER-DAEMON@mx.example.org", AutoKind.BOUNCE),
        ("postmaster@example.org", AutoKind.BOUNCE),
        ("noreply@shop.example", AutoKind.AUTO_GENERATED),
        ("no-reply+abc@shop.example", AutoKind.AUTO_GENERATED),
        ("donotreply@bank.example", AutoKind.AUTO_GENERATED),
        ("support@help.test", AutoKind.OWN_LOOP),
    ],
)
def test_given_machine_sender_then_not_answered(sender: str, kind: AutoKind) -> None:
    verdict = _verdict(sender=sender)
    assert verdict.kind is kind
    assert not verdict.notify


def test_given_null_reverse_path_then_it_is_a_bounce() -> None:
    verdict = _verdict(envelope="")
    assert verdict.kind is AutoKind.BOUNCE
    assert "null-reverse-path" in verdict.reasons


@pytest.mark.parametrize(
    "subject", ["Automatic reply: hello", "Out of Office: back Monday", "Autosvar: x"]
)
def test_given_out_of_office_subject_without_headers_then_not_answered(subject: str) -> None:
    raw = f"From: bob@example.org\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()
    verdict = classify(parse_message(raw), envelope_sender="bob@example.org", loop_id=LOOP_ID)
    assert verdict.kind is AutoKind.AUTO_REPLY


def test_given_several_signals_then_the_most_severe_kind_wins_and_all_reasons_are_kept() -> None:
    verdict = _verdict(f"Precedence: bulk\r\n{LOOP_HEADER}: {LOOP_ID}\r\n")
    assert verdict.kind is AutoKind.OWN_LOOP
    assert set(verdict.reasons) == {"loop-header-ours", "precedence:bulk"}


def test_rate_limiter_allows_limit_per_window_per_sender() -> None:
    limiter = SenderRateLimiter(limit=3, window_s=60.0)
    assert [limiter.allow("A@x", t) for t in (0.0, 1.0, 2.0, 3.0)] == [True, True, True, False]
    assert limiter.allow("b@x", 3.0)
    assert limiter.allow("a@x", 60.5)  # the first hit has left the window


def test_rate_limiter_memory_is_bounded() -> None:
    limiter = SenderRateLimiter(limit=1, window_s=60.0, max_senders=2)
    for sender in ("a@x", "b@x", "c@x"):
        assert limiter.allow(sender, 0.0)
    assert limiter.allow("a@x", 1.0)  # forgotten as least recently seen


def test_rate_limited_verdict_keeps_kind_of_automated_mail() -> None:
    assert _verdict().rate_limited().kind is AutoKind.RATE_LIMITED
    assert _verdict("Precedence: bulk\r\n").rate_limited().kind is AutoKind.BULK
