"""MIME parsing of inbound mail: raw bytes in, a ParsedMessage out; never raises, keeps the raw.

Theory of operation (RFC 5322 message format, RFC 2045-2049 MIME, RFC 2047 encoded words,
RFC 2183 Content-Disposition, RFC 2392 Content-ID):

* The stdlib parser runs in its lenient ``compat32`` mode, which accepts almost anything and
  records ``defects`` instead of raising. We decode header values ourselves (encoded words and
  raw 8-bit headers) so that an unknown or hostile charset label can never raise.
* Text is decoded with the declared charset through an alias table that follows the WHATWG
  Encoding Standard for mislabelled legacy mail: ``iso-8859-1`` is read as ``windows-1252``,
  ``gb2312``/``gbk`` as ``gb18030``, ``shift_jis`` as ``cp932``, ``euc-kr`` as ``cp949``; a
  ``us-ascii`` label on 8-bit data is tried as UTF-8 first. An unknown label is tried as UTF-8,
  then windows-1252, and the message is flagged ``unknown-charset``; bytes that do not fit the
  declared charset are replaced with U+FFFD and flagged ``undecodable-text``.
* Broken base64 and quoted-printable bodies are decoded best effort and flagged; the raw bytes
  stay on the ParsedMessage, so nothing is lost.
* The body text is the text/plain alternative when there is one; an HTML-only body becomes plain
  text through :func:`html_to_text`, which drops ``<script>``/``<style>`` and every tag.
* Limits (parts, nesting depth, text and HTML length) bound the work for hostile input; hitting
  one flags the message ``truncated``. The total size is enforced before parsing, at SMTP DATA.
* A message with no header at all is flagged ``unparseable``, one without a usable From address
  ``no-sender``; the caller keeps the raw bytes and routes the message for review.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from datetime import datetime
from email import errors as email_errors
from email.header import decode_header
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime
from enum import StrEnum
from html.parser import HTMLParser

__all__ = [
    "Attachment",
    "ParseFlag",
    "ParseLimits",
    "ParsedMessage",
    "decode_text",
    "html_to_text",
    "parse_message",
]


class ParseFlag(StrEnum):
    """Something the parser had to work around; kept on the message for review and reports."""

    UNPARSEABLE = "unparseable"
    NO_SENDER = "no-sender"
    MALFORMED_STRUCTURE = "malformed-structure"
    BAD_BASE64 = "bad-base64"
    BAD_QUOTED_PRINTABLE = "bad-quoted-printable"
    UNKNOWN_CHARSET = "unknown-charset"
    UNDECODABLE_TEXT = "undecodable-text"
    HTML_ONLY = "html-only"
    TRUNCATED = "truncated"


#: Flags that mean a human should look at the raw message.
REVIEW_FLAGS = frozenset(
    {
        ParseFlag.UNPARSEABLE,
        ParseFlag.NO_SENDER,
        ParseFlag.MALFORMED_STRUCTURE,
        ParseFlag.BAD_BASE64,
        ParseFlag.BAD_QUOTED_PRINTABLE,
        ParseFlag.UNKNOWN_CHARSET,
        ParseFlag.UNDECODABLE_TEXT,
        ParseFlag.TRUNCATED,
    }
)


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Bounds on the work done for one message (the byte size is enforced at SMTP DATA)."""

    max_parts: int = 250
    max_depth: int = 12
    max_text_chars: int = 1_000_000
    max_html_chars: int = 2_000_000
    max_headers: int = 500
    max_references: int = 64


@dataclass(frozen=True, slots=True)
class Attachment:
    """One non-body MIME part: a file, an inline image (with its Content-ID) or a forwarded mail."""

    filename: str | None
    content_type: str
    data: bytes
    inline: bool
    content_id: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """What the help desk needs from one inbound message, plus the untouched raw bytes."""

    raw: bytes
    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    subject: str
    from_address: str | None
    from_name: str
    reply_to: tuple[str, ...]
    to: tuple[str, ...]
    cc: tuple[str, ...]
    date: datetime | None
    text: str
    attachments: tuple[Attachment, ...]
    headers: tuple[tuple[str, str], ...]
    flags: frozenset[ParseFlag]
    defects: tuple[str, ...] = ()

    @property
    def needs_review(self) -> bool:
        """True when the parser had to guess or give up somewhere (see :data:`REVIEW_FLAGS`)."""
        return bool(self.flags & REVIEW_FLAGS)

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), decoded, or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key == wanted:
                return value
        return None

    def header_values(self, name: str) -> tuple[str, ...]:
        wanted = name.lower()
        return tuple(value for key, value in self.headers if key == wanted)


# ---------------------------------------------------------------------------------------------
# charsets

_ALIASES: dict[str, str] = {
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "iso_8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "windows-1252": "cp1252",
    "x-cp1252": "cp1252",
    "gb2312": "gb18030",
    "gb_2312-80": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "euc-cn": "gb18030",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "ms_kanji": "cp932",
    "windows-31j": "cp932",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
    "iso-8859-9": "cp1254",
    "tis-620": "cp874",
    "iso-8859-11": "cp874",
    "big5": "big5hkscs",
    "utf8": "utf-8",
}
_ASCII_LABELS = frozenset({"", "us-ascii", "ascii", "ansi_x3.4-1968", "us", "7bit", "8bit"})
_UNKNOWN_LABELS = frozenset({"unknown-8bit", "x-unknown", "unknown", "x-user-defined", "default"})
# Python codecs that are text encodings but must never interpret untrusted mail.
_BLOCKED_CODECS = frozenset(
    {"unicode_escape", "raw_unicode_escape", "idna", "punycode", "undefined", "mbcs", "oem"}
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _guess(data: bytes) -> str:
    """UTF-8 when the bytes are valid UTF-8, else windows-1252 (latin-1 for its five holes)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def decode_text(data: bytes, charset: str | None) -> tuple[str, frozenset[ParseFlag]]:
    """Decode ``data`` labelled ``charset``; never raises. Returns the text and any flags."""
    label = (charset or "").strip().strip("\"'").lower()
    if label in _ASCII_LABELS:
        return _guess(data), frozenset()
    if label in _UNKNOWN_LABELS:
        return _guess(data), frozenset({ParseFlag.UNKNOWN_CHARSET})
    name = _ALIASES.get(label, label)
    try:
        codec = codecs.lookup(name).name
    except (LookupError, ValueError):
        return _guess(data), frozenset({ParseFlag.UNKNOWN_CHARSET})
    if codec.replace("-", "_") in _BLOCKED_CODECS:
        return _guess(data), frozenset({ParseFlag.UNKNOWN_CHARSET})
    try:
        return data.decode(codec), frozenset()
    except UnicodeDecodeError:
        return data.decode(codec, errors="replace"), frozenset({ParseFlag.UNDECODABLE_TEXT})
    except LookupError:  # a bytes-to-bytes codec such as base64 or zlib
        return _guess(data), frozenset({ParseFlag.UNKNOWN_CHARSET})


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", text)


# ---------------------------------------------------------------------------------------------
# headers


def _unsurrogate(value: str) -> str:
    """Raw 8-bit header bytes arrive as surrogate escapes: read them as UTF-8 or windows-1252."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _guess(value.encode("utf-8", "surrogateescape"))
    return value


def _decode_header_value(value: str, flags: set[ParseFlag]) -> str:
    value = _unsurrogate(str(value))
    try:
        pieces = decode_header(value)
    except Exception:  # the stdlib splitter chokes on some malformed encoded words
        return _clean(value).replace("\n", " ")
    out: list[str] = []
    for chunk, charset in pieces:
        if isinstance(chunk, str):
            out.append(chunk)
            continue
        text, more = decode_text(chunk, charset)
        flags.update(more)
        out.append(text)
    joined = "".join(out)
    return re.sub(r"\s*\n\s*", " ", _clean(joined)).strip()


_MSGID = re.compile(r"<([^<>\s]{1,998})>")


def _message_ids(value: str | None, limit: int) -> tuple[str, ...]:
    """The ids in a Message-ID / In-Reply-To / References header, without angle brackets."""
    if not value:
        return ()
    found = _MSGID.findall(value)
    if not found:  # some clients omit the brackets
        found = [token for token in value.split() if "@" in token]
    ids: list[str] = []
    for item in found:
        item = item.strip()
        if item and item not in ids:
            ids.append(item)
    if len(ids) > limit:  # keep the root and the newest ones: clients truncate the middle too
        ids = ids[:1] + ids[-(limit - 1) :]
    return tuple(ids)


def _addresses(raw_values: list[str], flags: set[ParseFlag]) -> list[tuple[str, str]]:
    """(display name, lower-case address) pairs from raw address headers; junk is skipped."""
    out: list[tuple[str, str]] = []
    try:
        pairs = getaddresses([_unsurrogate(str(value)) for value in raw_values])
    except Exception:  # malformed address lists must not sink the message
        return out
    for name, addr in pairs:
        addr = addr.strip().strip("<>").lower()
        local, at, domain = addr.rpartition("@")
        if at and local and domain and " " not in addr and "@" not in local:
            out.append((_decode_header_value(name, flags).strip('"'), addr))
    return out


# ---------------------------------------------------------------------------------------------
# HTML -> text


class _HtmlText(HTMLParser):
    """Collects readable text from HTML; never emits markup (script/style/head are dropped)."""

    _SKIP = frozenset(
        {"script", "style", "head", "title", "noscript", "template", "iframe", "object", "svg"}
    )
    _BLOCK = frozenset(
        {
            "p", "div", "br", "tr", "table", "blockquote", "pre", "hr", "section", "article",
            "header", "footer", "ul", "ol", "dl", "dt", "dd", "h1", "h2", "h3", "h4", "h5",
            "h6", "address", "form", "fieldset", "caption", "center",
        }
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip: list[str] = []
        self._href: str | None = None
        self._link_text: list[str] = []
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self._skip = [name for name in self._skip if name not in ("head", "title")]
            return
        if tag in self._SKIP:
            self._skip.append(tag)
            return
        if self._skip:
            return
        if tag in self._BLOCK:
            self.parts.append("\n")
        if tag == "pre":
            self._pre += 1
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in ("td", "th"):
            self.parts.append(" ")
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.parts.append(f"[{alt}]")
        elif tag == "a":
            href = (dict(attrs).get("href") or "").strip()
            scheme = href.split(":", 1)[0].lower() if ":" in href else ""
            self._href = href if scheme in ("http", "https", "mailto") else None
            self._link_text = []

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            return
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            if tag in self._skip:
                while self._skip and self._skip.pop() != tag:
                    pass
            return
        if self._skip:
            return
        if tag == "pre" and self._pre:
            self._pre -= 1
        if tag in self._BLOCK:
            self.parts.append("\n")
        elif tag == "a" and self._href:
            shown = "".join(self._link_text).strip()
            target = self._href.removeprefix("mailto:")
            if target and target not in shown:
                self.parts.append(f" ({target})")
            self._href = None

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if not self._pre:
            data = re.sub(r"\s+", " ", data)
        self.parts.append(data)
        if self._href is not None:
            self._link_text.append(data)


def html_to_text(html: str) -> str:
    """Plain, markup-free text of an HTML body; script, style and head contents are dropped."""
    parser = _HtmlText()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # HTMLParser is lenient; this guards against an unexpected corner case
        return re.sub(r"<[^>]*>?", " ", html)
    text = "".join(parser.parts)
    lines = [line.strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# ---------------------------------------------------------------------------------------------
# body walk

_BASE64_DEFECTS = (
    email_errors.InvalidBase64PaddingDefect,
    email_errors.InvalidBase64CharactersDefect,
    email_errors.InvalidBase64LengthDefect,
)
_STRUCTURE_DEFECTS = (
    email_errors.NoBoundaryInMultipartDefect,
    email_errors.StartBoundaryNotFoundDefect,
    email_errors.CloseBoundaryNotFoundDefect,
    email_errors.MultipartInvariantViolationDefect,
    email_errors.FirstHeaderLineIsContinuationDefect,
    email_errors.MisplacedEnvelopeHeaderDefect,
    email_errors.MissingHeaderBodySeparatorDefect,
)
_BAD_QP = re.compile(r"=(?![0-9A-Fa-f]{2}|\r?\n|[ \t]*$)", re.MULTILINE)


def _children(part: Message) -> list[Message] | None:
    """The sub-parts of a multipart, or None when its payload is not a list of parts."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        return None
    return [child for child in payload if isinstance(child, Message)]


class _Walker:
    """Walks the MIME tree once, collecting body text, attachments, flags and defect names."""

    def __init__(self, limits: ParseLimits) -> None:
        self.limits = limits
        self.flags: set[ParseFlag] = set()
        self.defects: list[str] = []
        self.plain: list[str] = []
        self.html: list[str] = []
        self.attachments: list[Attachment] = []
        self.parts = 0
        self.text_chars = 0

    def _note_defects(self, part: Message) -> None:
        for defect in part.defects:
            self.defects.append(type(defect).__name__)
            if isinstance(defect, _BASE64_DEFECTS):
                self.flags.add(ParseFlag.BAD_BASE64)
            elif isinstance(defect, _STRUCTURE_DEFECTS):
                self.flags.add(ParseFlag.MALFORMED_STRUCTURE)

    def _payload(self, part: Message) -> bytes:
        cte = str(part.get("content-transfer-encoding", "")).strip().lower()
        if cte == "quoted-printable":
            raw = part.get_payload(decode=False)
            if isinstance(raw, str) and _BAD_QP.search(raw):
                self.flags.add(ParseFlag.BAD_QUOTED_PRINTABLE)
        before = len(part.defects)
        data = part.get_payload(decode=True)
        for defect in part.defects[before:]:
            self.defects.append(type(defect).__name__)
            if isinstance(defect, _BASE64_DEFECTS):
                self.flags.add(ParseFlag.BAD_BASE64)
        return data if isinstance(data, bytes) else b""

    def _text(self, part: Message) -> str:
        text, flags = decode_text(self._payload(part), part.get_content_charset())
        self.flags.update(flags)
        return _clean(text)

    def _add_text(self, bucket: list[str], text: str, limit: int) -> None:
        room = limit - self.text_chars
        if room <= 0:
            self.flags.add(ParseFlag.TRUNCATED)
            return
        if len(text) > room:
            text = text[:room]
            self.flags.add(ParseFlag.TRUNCATED)
        self.text_chars += len(text)
        bucket.append(text)

    def _filename(self, part: Message, flags: set[ParseFlag]) -> str | None:
        try:
            name = part.get_filename()
        except Exception:  # malformed RFC 2231 parameters
            name = None
        if name is None:
            return None
        return _decode_header_value(str(name), flags).replace("/", "_").replace("\\", "_")

    def _attach(self, part: Message) -> None:
        ctype = part.get_content_type()
        disposition = (part.get_content_disposition() or "").lower()
        cid_raw = part.get("content-id")
        content_id = str(cid_raw).strip().strip("<>") if cid_raw else None
        filename = self._filename(part, self.flags)
        if part.is_multipart():  # message/rfc822: keep the forwarded mail as an .eml file
            try:
                inner = part.get_payload(0)
                data = inner.as_bytes() if isinstance(inner, Message) else b""
            except Exception:
                data = b""
                self.flags.add(ParseFlag.MALFORMED_STRUCTURE)
            filename = filename or "forwarded.eml"
        else:
            data = self._payload(part)
        inline = disposition == "inline" or (disposition == "" and content_id is not None)
        self.attachments.append(Attachment(filename, ctype, data, inline, content_id))

    def walk(self, part: Message, depth: int) -> None:
        self.parts += 1
        if self.parts > self.limits.max_parts or depth > self.limits.max_depth:
            self.flags.add(ParseFlag.TRUNCATED)
            return
        self._note_defects(part)
        ctype = part.get_content_type()
        maintype = part.get_content_maintype()
        if maintype == "multipart":
            children = _children(part)
            if children is None:  # multipart without a usable boundary
                self.flags.add(ParseFlag.MALFORMED_STRUCTURE)
                self._add_text(self.plain, self._text(part), self.limits.max_text_chars)
                return
            if ctype == "multipart/alternative":
                self._alternative(children, depth)
            else:
                for child in children:
                    self.walk(child, depth + 1)
            return
        if ctype == "message/rfc822" or not self._is_body(part):
            self._attach(part)
            return
        if ctype == "text/html":
            self._add_text(self.html, self._text(part), self.limits.max_html_chars)
        else:
            self._add_text(self.plain, self._text(part), self.limits.max_text_chars)

    def _alternative(self, children: list[Message], depth: int) -> None:
        plain = [c for c in children if c.get_content_type() == "text/plain"]
        if plain:
            self.walk(plain[-1], depth + 1)
            for child in children:  # related images etc. of the richer alternatives
                if child.get_content_maintype() == "multipart":
                    self._attachments_only(child, depth + 1)
            return
        for child in reversed(children):
            if child.get_content_type() == "text/html" or child.is_multipart():
                self.walk(child, depth + 1)
                return
        for child in children:
            self.walk(child, depth + 1)

    def _attachments_only(self, part: Message, depth: int) -> None:
        self.parts += 1
        if self.parts > self.limits.max_parts or depth > self.limits.max_depth:
            self.flags.add(ParseFlag.TRUNCATED)
            return
        for child in _children(part) or []:
            if child.is_multipart():
                self._attachments_only(child, depth + 1)
            elif not (child.get_content_maintype() == "text" and self._is_body(child)):
                self._attach(child)

    @staticmethod
    def _is_body(part: Message) -> bool:
        if part.get_content_type() not in ("text/plain", "text/html"):
            return False
        if (part.get_content_disposition() or "") == "attachment":
            return False
        try:
            return part.get_filename() is None
        except Exception:
            return False


# ---------------------------------------------------------------------------------------------
# entry point


def _unparseable(raw: bytes, defects: tuple[str, ...]) -> ParsedMessage:
    return ParsedMessage(
        raw=raw,
        message_id=None,
        in_reply_to=(),
        references=(),
        subject="",
        from_address=None,
        from_name="",
        reply_to=(),
        to=(),
        cc=(),
        date=None,
        text="",
        attachments=(),
        headers=(),
        flags=frozenset({ParseFlag.UNPARSEABLE, ParseFlag.NO_SENDER}),
        defects=defects,
    )


def parse_message(raw: bytes, limits: ParseLimits | None = None) -> ParsedMessage:
    """Parse one RFC 5322 message. Never raises: failures are flags, the raw bytes are kept."""
    limits = limits or ParseLimits()
    try:
        return _parse(raw, limits)
    except Exception as err:  # a parser bug or resource limit must not lose the message
        return _unparseable(raw, (f"{type(err).__name__}: {err}"[:200],))


def _parse(raw: bytes, limits: ParseLimits) -> ParsedMessage:
    message = BytesParser(policy=compat32).parsebytes(raw)
    items = message.raw_items() if hasattr(message, "raw_items") else message.items()
    header_flags: set[ParseFlag] = set()
    headers: list[tuple[str, str]] = []
    raw_headers: list[tuple[str, str]] = []
    for name, value in items:
        if len(headers) >= limits.max_headers:
            header_flags.add(ParseFlag.TRUNCATED)
            break
        key = name.strip().lower()
        raw_headers.append((key, str(value)))
        headers.append((key, _decode_header_value(value, header_flags)))
    if not headers:
        return _unparseable(raw, tuple(type(d).__name__ for d in message.defects))

    def first(name: str) -> str | None:
        return next((value for key, value in headers if key == name), None)

    def every(name: str) -> list[str]:
        return [value for key, value in headers if key == name]

    def addresses(name: str) -> tuple[str, ...]:
        raw_values = [value for key, value in raw_headers if key == name]
        return tuple(addr for _, addr in _addresses(raw_values, header_flags))

    senders = _addresses([value for key, value in raw_headers if key == "from"][:1], header_flags)
    from_name, from_address = senders[0] if senders else ("", None)
    try:
        date_value = first("date")
        date = parsedate_to_datetime(date_value) if date_value else None
    except (TypeError, ValueError, IndexError):
        date = None
    message_ids = _message_ids(first("message-id"), 1)

    reply_to, to, cc = addresses("reply-to"), addresses("to"), addresses("cc")
    walker = _Walker(limits)
    walker.walk(message, 0)
    flags = header_flags | walker.flags
    if walker.plain:
        text = "\n".join(walker.plain).strip()
    elif walker.html:
        text = html_to_text("\n".join(walker.html))
        flags.add(ParseFlag.HTML_ONLY)
    else:
        text = ""
    if from_address is None:
        flags.add(ParseFlag.NO_SENDER)
    return ParsedMessage(
        raw=raw,
        message_id=message_ids[0] if message_ids else None,
        in_reply_to=_message_ids(first("in-reply-to"), limits.max_references),
        references=_message_ids(" ".join(every("references")), limits.max_references),
        subject=first("subject") or "",
        from_address=from_address,
        from_name=from_name,
        reply_to=reply_to,
        to=to,
        cc=cc,
        date=date,
        text=text,
        attachments=tuple(walker.attachments),
        headers=tuple(headers),
        flags=frozenset(flags),
        defects=tuple(walker.defects),
    )
