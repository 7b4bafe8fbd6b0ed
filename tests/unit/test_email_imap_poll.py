"""IMAP polling's pure parts: the envelope read from delivery headers, and settings checks."""

from __future__ import annotations

import pytest

from tickets.email.imap_poll import AfterStore, ImapSettings, delivery_envelope


def test_given_return_path_and_delivered_to_then_they_stand_for_mail_from_and_rcpt_to() -> None:
    raw = (
        b"Return-Path: <Alice@Example.org>\r\n"
        b"Delivered-To: support+t.abc@help.test\r\n"
        b"X-Original-To: Support@help.test\r\n"
        b"From: someone-else@example.org\r\n\r\n"
        b"Return-Path: <not-a-header@body.test>\r\n"
    )
    assert delivery_envelope(raw) == (
        "Alice@Example.org",
        ("support+t.abc@help.test", "support@help.test"),
    )


def test_given_a_null_return_path_then_the_envelope_sender_is_empty_like_smtp_null_path() -> None:
    assert delivery_envelope(b"Return-Path: <>\r\nFrom: MAILER-DAEMON@x.test\r\n\r\nbounce") == (
        "",
        (),
    )


def test_given_no_delivery_headers_then_sender_unknown_and_no_recipients() -> None:
    assert delivery_envelope(b"From: a@x.test\nSubject: appended by hand\n\nbody") == (None, ())
    assert delivery_envelope(b"") == (None, ())
    assert delivery_envelope(b"\xff\xfe not a mail at all") == (None, ())


def test_given_the_same_recipient_twice_then_listed_once() -> None:
    raw = b"Delivered-To: s@help.test\r\nX-Original-To: S@HELP.TEST\r\n\r\n"
    assert delivery_envelope(raw) == (None, ("s@help.test",))


def test_settings_mask_the_user_and_never_show_the_password() -> None:
    settings = ImapSettings("imap.help.test", username="desk@help.test", password="hunter2")
    assert settings.where == "imap.help.test:993/INBOX as d***@help.test"
    assert "hunter2" not in repr(settings)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"host": ""}, "host must be set"),
        ({"interval": 0}, "must be positive"),
        ({"command_timeout": -1}, "must be positive"),
        ({"max_attempts": 0}, "at least 1"),
        ({"after_store": AfterStore.MOVE}, "needs move_to"),
        ({"folder": "Boîte"}, "ASCII"),
    ],
)
def test_given_bad_settings_then_value_error_names_the_problem(
    options: dict[str, object], message: str
) -> None:
    values: dict[str, object] = {"host": "imap.help.test", **options}
    with pytest.raises(ValueError, match=message):
        ImapSettings(**values)  # type: ignore[arg-type]
