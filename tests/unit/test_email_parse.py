"""MIME parsing: attachments and inline parts, odd charsets, broken encodings, HTML, bad input."""

from __future__ import annotations

import base64
from email.message import EmailMessage

from hypothesis import given, settings
from hypothesis import strategies as st

from tickets.email.parse import (
    ParseFlag,
    ParseLimits,
    decode_text,
    html_to_text,
    parse_message,
)


def _raw(headers: str, body: bytes) -> bytes:
    head = "From: Alice <Alice@Example.ORG>\r\nTo: support@help.test\r\n" + headers
    return head.replace("\n", "\r\n").replace("\r\r", "\r").encode() + b"\r\n" + body


def _single(charset: str, payload: bytes, cte: str = "8bit") -> bytes:
    return _raw(
        "Subject: hi\nMIME-Version: 1.0\n"
        f"Content-Type: text/plain; charset={charset}\nContent-Transfer-Encoding: {cte}\n",
        payload,
    )


def test_given_mixed_message_with_pdf_and_inline_image_then_body_and_both_parts_are_kept() -> None:
    msg = EmailMessage()
    msg["From"] = "Alice <alice@example.org>"
    msg["To"] = "support@help.test"
    msg["Subject"] = "Invoice"
    msg["Message-ID"] = "<m1@example.org>"
    msg.set_content("Plain body, see logo.")
    msg.add_alternative('<p>HTML body <img src="cid:logo@x"></p>', subtype="html")
    html_part = msg.get_body(("html",))
    assert isinstance(html_part, EmailMessage)
    html_part.add_related(b"\x89PNG fake", maintype="image", subtype="png", cid="<logo@x>")
    msg.add_attachment(b"%PDF-1.4 data", maintype="application", subtype="pdf", filename="a.pdf")

    parsed = parse_message(msg.as_bytes())

    assert parsed.text == "Plain body, see logo."
    assert parsed.message_id == "m1@example.org"
    assert parsed.from_address == "alice@example.org"
    kinds = {(a.content_type, a.filename, a.inline, a.content_id) for a in parsed.attachments}
    assert ("application/pdf", "a.pdf", False, None) in kinds
    assert ("image/png", None, True, "logo@x") in kinds
    pdf = next(a for a in parsed.attachments if a.filename == "a.pdf")
    assert pdf.data == b"%PDF-1.4 data"
    assert pdf.size == len(b"%PDF-1.4 data")
    assert not parsed.needs_review


def test_given_forwarded_message_part_then_it_is_kept_as_an_eml_attachment() -> None:
    inner = _raw("Subject: original\n", b"inner body\r\n")
    outer = _raw(
        'Subject: Fwd\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b"\n',
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee below\r\n--b\r\n"
        b"Content-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--b--\r\n",
    )
    parsed = parse_message(outer)
    assert parsed.text == "see below"
    (forwarded,) = parsed.attachments
    assert forwarded.filename == "forwarded.eml"
    assert b"inner body" in forwarded.data


def test_given_iso_8859_1_label_then_text_is_read_as_windows_1252() -> None:
    text = "Caf\u00e9 \u2013 \u201cquoted\u201d \u20ac5"  # en dash, curly quotes, euro
    parsed = parse_message(_single("ISO-8859-1", text.encode("cp1252")))
    assert parsed.text == text
    assert parsed.flags == frozenset()


def test_given_windows_1252_body_then_smart_quotes_and_euro_decode() -> None:
    text = "It\u2019s 10\u20ac"
    parsed = parse_message(_single("windows-1252", text.encode("cp1252")))
    assert parsed.text == text


def test_given_shift_jis_body_and_encoded_subject_then_japanese_text_decodes() -> None:
    subject = base64.b64encode("件名".encode("shift_jis")).decode()
    raw = _raw(
        f"Subject: =?Shift_JIS?B?{subject}?=\nMIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=Shift_JIS\nContent-Transfer-Encoding: base64\n",
        base64.b64encode("日本語のメール".encode("shift_jis")) + b"\r\n",
    )
    parsed = parse_message(raw)
    assert parsed.subject == "件名"
    assert parsed.text == "日本語のメール"
    assert not parsed.needs_review


def test_given_gb2312_label_with_gbk_only_characters_then_gb18030_decodes_them() -> None:
    text = "中文邮件 镕"  # 镕 is GBK, not GB2312: real mail labelled gb2312 contains such
    parsed = parse_message(_single("gb2312", text.encode("gbk")))
    assert parsed.text == text
    assert not parsed.needs_review


def test_given_unknown_charset_then_text_is_guessed_and_flagged() -> None:
    parsed = parse_message(_single("x-klingon", "naïve UTF-8".encode()))
    assert parsed.text == "naïve UTF-8"
    assert ParseFlag.UNKNOWN_CHARSET in parsed.flags
    assert parsed.needs_review


def test_given_bytes_invalid_in_declared_charset_then_replaced_and_flagged() -> None:
    parsed = parse_message(_single("utf-8", b"ok \xff\xfe end"))
    assert parsed.text.startswith("ok ")
    assert parsed.text.endswith(" end")
    assert ParseFlag.UNDECODABLE_TEXT in parsed.flags


def test_given_dangerous_python_codec_label_then_it_is_not_used() -> None:
    parsed = parse_message(_single("unicode_escape", b"\\u0041 literal"))
    assert parsed.text == "\\u0041 literal"
    assert ParseFlag.UNKNOWN_CHARSET in parsed.flags


def test_given_broken_base64_then_best_effort_text_is_kept_and_flagged() -> None:
    parsed = parse_message(_single("utf-8", b"SGVsbG8gd29ybGQ!!!*\r\n", cte="base64"))
    assert "Hello" in parsed.text
    assert ParseFlag.BAD_BASE64 in parsed.flags
    assert parsed.raw.endswith(b"SGVsbG8gd29ybGQ!!!*\r\n")


def test_given_broken_quoted_printable_then_text_is_kept_and_flagged() -> None:
    parsed = parse_message(
        _single("utf-8", b"caf=C3=A9 =ZZ broken =\r\nsoft\r\n", "quoted-printable")
    )
    assert "café" in parsed.text
    assert "=ZZ broken soft" in parsed.text
    assert ParseFlag.BAD_QUOTED_PRINTABLE in parsed.flags


def test_given_html_only_body_with_script_then_text_is_safe_and_flagged_html_only() -> None:
    html = (
        "<html><head><title>t</title><style>p{color:red}</style><script>steal()</script></head>"
        "<body><h1>Order&nbsp;42</h1><p>Hello <b>Bob</b>,<br>thanks.</p>"
        "<script type='text/javascript'>document.cookie</script>"
        "<img src=x onerror=alert(1) alt='logo'>"
        "<a href='javascript:alert(2)'>click</a> <a href='https://shop.test/o/42'>order</a>"
        "<ul><li>one</li><li>two</li></ul><p>&lt;script&gt; is text</p></body></html>"
    )
    raw = _raw("Subject: h\nContent-Type: text/html; charset=utf-8\n", html.encode())
    parsed = parse_message(raw)
    assert ParseFlag.HTML_ONLY in parsed.flags
    text = parsed.text
    for forbidden in ("steal", "document.cookie", "onerror", "alert", "javascript", "color:red"):
        assert forbidden not in text
    assert "<b>" not in text
    assert "Order 42" in text
    assert "Hello Bob,\nthanks." in text
    assert "order (https://shop.test/o/42)" in text
    assert "- one\n- two" in text
    assert "<script> is text" in text  # an escaped entity is text; renderers escape it again


def test_given_unclosed_head_then_body_text_is_still_extracted() -> None:
    assert html_to_text("<head><title>x</title><body>visible</body>") == "visible"


def test_given_garbage_bytes_then_message_is_flagged_unparseable_and_raw_kept() -> None:
    raw = b"\x00\xff\xfe this is not an email \x00"
    parsed = parse_message(raw)
    assert parsed.raw == raw
    assert {ParseFlag.UNPARSEABLE, ParseFlag.NO_SENDER} <= parsed.flags


def test_given_no_from_header_then_flagged_no_sender() -> None:
    parsed = parse_message(b"Subject: x\r\n\r\nbody\r\n")
    assert parsed.from_address is None
    assert ParseFlag.NO_SENDER in parsed.flags


def test_given_multipart_without_boundary_then_structure_flagged_and_body_kept() -> None:
    raw = _raw("Subject: x\nContent-Type: multipart/mixed\n", b"just text\r\n")
    parsed = parse_message(raw)
    assert ParseFlag.MALFORMED_STRUCTURE in parsed.flags
    assert "just text" in parsed.text


def test_given_more_parts_than_the_limit_then_message_is_truncated_and_flagged() -> None:
    parts = b"".join(
        b"--b\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n" for _ in range(30)
    )
    raw = _raw('Subject: x\nContent-Type: multipart/mixed; boundary="b"\n', parts + b"--b--\r\n")
    parsed = parse_message(raw, ParseLimits(max_parts=10))
    assert ParseFlag.TRUNCATED in parsed.flags
    assert len(parsed.attachments) < 10


def test_given_encoded_word_in_unknown_charset_then_header_decodes_without_error() -> None:
    raw = _raw("Subject: =?x-unknown?Q?caf=C3=A9?= ok\n", b"b\r\n")
    parsed = parse_message(raw)
    assert parsed.subject == "café ok"
    assert ParseFlag.UNKNOWN_CHARSET in parsed.flags


def test_given_raw_8bit_utf8_header_then_it_decodes() -> None:
    raw = (
        b"From: =?utf-8?q?Doe=2C_J=C3=BCrgen?= <j@x.de>\r\n"
        b"Subject: Gr\xc3\xbc\xc3\x9fe\r\n\r\nb\r\n"
    )
    parsed = parse_message(raw)
    assert parsed.subject == "Grüße"
    assert parsed.from_name == "Doe, Jürgen"
    assert parsed.from_address == "j@x.de"


def test_given_references_longer_than_limit_then_root_and_newest_are_kept() -> None:
    refs = " ".join(f"<r{i}@x>" for i in range(100))
    parsed = parse_message(_raw(f"References: {refs}\nIn-Reply-To: r99@x\n", b"b\r\n"))
    assert parsed.references[0] == "r0@x"
    assert parsed.references[-1] == "r99@x"
    assert len(parsed.references) == ParseLimits().max_references
    assert parsed.in_reply_to == ("r99@x",)


def test_decode_text_treats_us_ascii_label_on_utf8_bytes_as_utf8() -> None:
    assert decode_text("Zoë".encode(), "us-ascii") == ("Zoë", frozenset())


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_parse_without_raising_and_keep_the_raw(raw: bytes) -> None:
    parsed = parse_message(raw)
    assert parsed.raw == raw


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["utf-8", "iso-8859-1", "shift_jis", "gb2312", "x-nope", "", "base64"]),
    st.binary(max_size=200),
    st.sampled_from(["8bit", "base64", "quoted-printable", "x-weird"]),
)
def test_any_body_in_any_label_and_encoding_parses(charset: str, body: bytes, cte: str) -> None:
    parsed = parse_message(_single(charset, body, cte))
    assert parsed.from_address == "alice@example.org"
    assert "\x00" not in parsed.text
