"""Sans-I/O codec for the Asterisk Manager Interface (AMI) wire format: bytes in, messages out.

Theory of operation
-------------------

This follows the byte-level AMI reference recorded from Asterisk 22.10.1 in
``tests/fixtures/asterisk-traces/README.md`` (section 4.1 "AMI", framing) and the
``*.ami.jsonl`` traces next to it. Those traces are the truth; where they and the Asterisk
documentation disagree, the traces win.

* On connect the server sends exactly one banner line, ``Asterisk Call Manager/11.0.0\\r\\n``,
  **not** followed by an empty line. A client decoder (``expect_banner=True``) yields it first
  as :class:`AmiBanner`. The server side (the simulator, which parses actions) uses
  ``expect_banner=False``.
* Every message, in both directions, is a run of ``Key: Value\\r\\n`` lines ended by an empty
  line, so a message ends at the first ``\\r\\n\\r\\n``. Framing works per read, not per
  message: one ``rfind`` of the terminator (resumed where the last search stopped, so a
  message arriving one byte at a time is scanned once in total) finds the end of the last
  complete message; everything before it is decoded once and cut with one
  ``str.split("\\r\\n\\r\\n")``, which cuts exactly where repeated left-to-right
  ``find`` calls would. The unterminated rest stays buffered as bytes.
* Each line is split on the **first** ``": "`` only: values contain ``": "``, ``/``, ``;``,
  ``@``, ``(``, ``)`` and spaces. An empty value keeps its space (``AccountCode: ``); a bare
  ``Key:`` is accepted too. Both give ``""``. Any other line without ``": "`` is an
  :class:`AmiProtocolError` (none occurs in the traces: Asterisk 22 sends ``Command`` output
  as repeated ``Output:`` headers, not as a raw body).
* Keys may repeat (``Output:``, ``Variable:``), so a message is an ordered tuple of
  ``(key, value)`` pairs, never a dict. Lookups are case-insensitive and take the first match.
  They are served from a dict of the first value per exact spelling (Asterisk's spellings are
  fixed, so callers asking ``Channel`` hit it), plus a lower-case -> spelling map shared by
  every message with the same header names; nothing is lower-cased per message.
* TCP splits and merges messages arbitrarily; :meth:`AmiDecoder.receive_data` only appends,
  and :meth:`AmiDecoder.next_event` returns ``None`` until a whole message is buffered.
* Robustness: empty lines *between* messages are skipped (as h11 does for HTTP); more than
  ``max_message_bytes`` without a terminator is an error instead of unbounded buffering;
  ``receive_data(b"")`` marks EOF, after which a partial message is an error. After an error
  the decoder stays broken and raises the same error again. Errors surface in stream order:
  the messages before a bad one are returned first.
* Bytes are decoded as UTF-8 with ``surrogateescape`` (the traces are all ASCII), so any byte
  sequence survives a decode/encode round trip. Decoding a whole read at once gives the same
  text as decoding message by message, because a terminator is ASCII and never part of a
  multi-byte sequence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from acd.errors import AcdError

__all__ = [
    "BANNER",
    "AmiBanner",
    "AmiDecoder",
    "AmiMessage",
    "AmiProtocolError",
    "encode_action",
    "encode_message",
]

BANNER = b"Asterisk Call Manager/11.0.0\r\n"

_EOL = b"\r\n"
_EOM = b"\r\n\r\n"
_ENCODING = "utf-8"
_ERRORS = "surrogateescape"


class AmiProtocolError(AcdError):
    """The AMI byte stream (or a message built for it) breaks the AMI framing rules."""

    error_id = "ami-protocol-error"


@dataclass(frozen=True, slots=True)
class AmiBanner:
    """The greeting line a server sends on connect, without its CRLF."""

    text: str


#: Header names (a message's distinct spellings, in order) -> lower-case name -> first
#: spelling, or None when two spellings differ only in case. Shared by every message with the
#: same names, so that case-insensitive lookups lower-case nothing per message; bounded.
_FOLDS: dict[tuple[str, ...], dict[str, str] | None] = {}
_FOLDS_MAX = 4096


def _fold_for(names: tuple[str, ...]) -> dict[str, str] | None:
    fold: dict[str, str] = {}
    for name in names:
        fold.setdefault(name.lower(), name)
    result = fold if len(fold) == len(names) else None
    if len(_FOLDS) >= _FOLDS_MAX:
        _FOLDS.clear()
    _FOLDS[names] = result
    return result


def _indexes(
    headers: tuple[tuple[str, str], ...],
) -> tuple[dict[str, str], dict[str, str]]:
    """The (exact, fold) pair of AmiMessage: see AmiMessage._exact."""
    exact = dict(headers)
    if len(exact) != len(headers):  # a repeated name: keep its first value
        exact = dict(reversed(headers))
    names = tuple(exact)
    try:
        fold = _FOLDS[names]
    except KeyError:
        fold = _fold_for(names)
    if fold is not None:
        return exact, fold
    # Two spellings differ only in case (never seen from Asterisk): key everything by its
    # lower-case name, so an exact hit is only possible for a lower-case key, and is right.
    lowered: dict[str, str] = {}
    for key, value in headers:
        lowered.setdefault(key.lower(), value)
    return lowered, {name: name for name in lowered}


@dataclass(frozen=True, slots=True)
class AmiMessage:
    """One AMI message (action, response or event): its headers in wire order, repeats kept."""

    headers: tuple[tuple[str, str], ...]
    # Lookup indexes, built by the decoder or on first use. `_exact` maps a header spelling to
    # its first value: a hit is always the case-insensitive first match (see _indexes for the
    # one exception, handled by keying on lower case). `_fold` maps a lower-case name to the
    # spelling to look up in `_exact` after a miss.
    _exact: dict[str, str] | None = field(
        default=None, init=False, repr=False, compare=False, hash=False
    )
    _fold: dict[str, str] | None = field(
        default=None, init=False, repr=False, compare=False, hash=False
    )

    def _lookup(self) -> tuple[dict[str, str], dict[str, str]]:
        exact, fold = _indexes(self.headers)
        object.__setattr__(self, "_exact", exact)
        object.__setattr__(self, "_fold", fold)
        return exact, fold

    def exact_index(self) -> Mapping[str, str]:
        """Header values by exact spelling, for fast lookups of Asterisk's fixed names.

        A hit is what :meth:`get` would return for that key; a miss only means "ask get()"
        (the header may be there in another case).
        """
        exact = self._exact
        if exact is None:
            exact = self._lookup()[0]
        return exact

    def get(self, key: str, default: str | None = None) -> str | None:
        """The value of the first header named `key` (case-insensitive), else `default`."""
        exact = self._exact
        fold = self._fold
        if exact is None or fold is None:
            exact, fold = self._lookup()
        value = exact.get(key)
        if value is not None:
            return value
        spelled = fold.get(key.lower())
        return default if spelled is None else exact[spelled]

    def get_all(self, key: str) -> list[str]:
        """Every value of the headers named `key` (case-insensitive), in wire order."""
        wanted = key.lower()
        return [value for name, value in self.headers if name.lower() == wanted]

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    @property
    def action_id(self) -> str | None:
        """The ``ActionID`` header, if any."""
        return self.get("ActionID")

    @property
    def event(self) -> str | None:
        """The ``Event`` header (the event name), if this is an event."""
        return self.get("Event")

    @property
    def response(self) -> str | None:
        """The ``Response`` header (``Success``, ``Error``, ``Goodbye``), if this is a response."""
        return self.get("Response")

    @property
    def action(self) -> str | None:
        """The ``Action`` header, if this is an action."""
        return self.get("Action")


_new_message = object.__new__
_set = object.__setattr__


def _parse_message(text: str) -> AmiMessage:
    """One message body (without its final CRLFCRLF) as an AmiMessage with its indexes built."""
    headers: list[tuple[str, str]] = []
    append = headers.append
    for line in text.split("\r\n"):
        key, sep, value = line.partition(": ")
        if not sep:
            if line.endswith(":") and len(line) > 1:
                key, value = line[:-1], ""
            else:
                raise AmiProtocolError(f"AMI line without 'Key: Value' separator: {line[:80]!r}")
        elif not key:
            raise AmiProtocolError(f"AMI line with an empty key: {line[:80]!r}")
        append((key, value))
    frozen = tuple(headers)
    exact, fold = _indexes(frozen)
    # What the dataclass __init__ does, with the indexes set in the same pass.
    message: AmiMessage = _new_message(AmiMessage)
    _set(message, "headers", frozen)
    _set(message, "_exact", exact)
    _set(message, "_fold", fold)
    return message


def _skip_crlfs(data: bytes | bytearray) -> int:
    """How many bytes of empty lines (CRLF pairs) `data` starts with."""
    pos = 0
    while data.startswith(_EOL, pos):
        pos += 2
    return pos


class AmiDecoder:
    """Incremental AMI stream decoder: feed bytes with receive_data(), pull with next_event()."""

    __slots__ = (
        "_buf",
        "_eof",
        "_error",
        "_expect_banner",
        "_late_error",
        "_max",
        "_ready",
        "_scan",
    )

    def __init__(self, *, expect_banner: bool = True, max_message_bytes: int = 1 << 20) -> None:
        if max_message_bytes < 1:
            raise ValueError("max_message_bytes must be positive")
        self._buf = bytearray()  # received bytes not yet framed (no complete message in it)
        self._scan = 0  # where the terminator search resumes (index in _buf)
        self._ready: list[str] = []  # framed message texts, in reverse order (pop() is next)
        self._late_error: AmiProtocolError | None = None  # raised once _ready is empty
        self._eof = False
        self._error: AmiProtocolError | None = None
        self._expect_banner = expect_banner
        self._max = max_message_bytes

    @property
    def eof(self) -> bool:
        """True once receive_data(b"") has signalled the end of the stream."""
        return self._eof

    @property
    def buffered(self) -> int:
        """Number of received bytes not yet returned as a banner or message."""
        framed = sum(len(text.encode(_ENCODING, _ERRORS)) + 4 for text in self._ready)
        return len(self._buf) + framed

    def receive_data(self, data: bytes) -> None:
        """Append bytes read from the socket; b"" means the peer closed (EOF)."""
        if self._eof:
            if data:
                raise AmiProtocolError("AMI data received after EOF")
            return
        if not data:
            self._eof = True
            return
        self._buf += data

    def next_event(self) -> AmiBanner | AmiMessage | None:
        """The next complete banner or message, or None if more data is needed."""
        try:
            ready = self._ready
            if ready:
                return _parse_message(ready.pop())
            if self._error is not None:
                raise self._error
            if self._expect_banner:
                return self._next_banner()
            if self._late_error is None:
                ready = self._frame()
                if ready:
                    self._ready = ready
                    return _parse_message(ready.pop())
            if self._late_error is not None:  # a message too long, after those before it
                raise self._late_error
            return None
        except AmiProtocolError as err:
            self._error = err
            self._ready = []
            raise

    def _next_banner(self) -> AmiBanner | None:
        buf = self._buf
        end = buf.find(_EOL, self._scan)
        if end < 0:
            self._scan = max(len(buf) - 1, 0)
            if len(buf) > self._max:
                raise AmiProtocolError(
                    f"AMI banner line longer than {self._max} bytes without a terminator"
                )
            if self._eof and buf:
                raise AmiProtocolError("connection closed in the middle of an AMI banner line")
            return None
        if end > self._max:
            raise AmiProtocolError(f"AMI banner line longer than {self._max} bytes")
        text = buf[:end].decode(_ENCODING, _ERRORS)
        if ": " in text:
            raise AmiProtocolError(f"expected the AMI banner line, got a header: {text[:80]!r}")
        del buf[: end + 2]
        self._scan = 0
        self._expect_banner = False
        return AmiBanner(text)

    def _frame(self) -> list[str]:
        """Take every complete message out of the buffer: their texts, last one first."""
        buf = self._buf
        last = buf.rfind(_EOM, self._scan)
        if last < 0:
            # Resume 3 bytes back: the terminator may straddle the next chunk boundary.
            self._scan = max(len(buf) - 3, 0)
            self._fail_if_too_long_or_truncated()
            return []
        cut = last + 4
        text = buf[:cut].decode(_ENCODING, _ERRORS)
        del buf[:cut]
        self._scan = 0
        parts = text.split("\r\n\r\n")
        if text.startswith("\r\n") or "\r\n\r\n\r\n" in text:
            # Empty lines between messages: a part starts with one CRLF, or is empty. (The
            # last part is "" or, when the rightmost terminator overlaps the one the split
            # used, "\r\n": an empty line either way.)
            parts = [part[2:] if part.startswith("\r\n") else part for part in parts]
            parts = [part for part in parts if part]
        else:
            parts.pop()  # the "" after the last terminator
        if cut > self._max:
            self._drop_from_first_too_long(parts)
        if not parts and self._late_error is None:
            # Only empty lines were framed: the rest of the buffer may still be an error.
            self._scan = max(len(buf) - 3, 0)
            self._fail_if_too_long_or_truncated()
        parts.reverse()
        return parts

    def _drop_from_first_too_long(self, parts: list[str]) -> None:
        """Keep the messages before the first one over max_message_bytes; fail after them."""
        limit = self._max
        for index, part in enumerate(parts):
            if len(part) > limit or len(part.encode(_ENCODING, _ERRORS)) > limit:
                del parts[index:]
                self._late_error = AmiProtocolError(f"AMI message longer than {limit} bytes")
                return

    def _fail_if_too_long_or_truncated(self) -> None:
        buf = self._buf
        if len(buf) > self._max or self._eof:
            pending = len(buf) - _skip_crlfs(buf)
            if pending > self._max:
                raise AmiProtocolError(
                    f"AMI message longer than {self._max} bytes without a terminator"
                )
            if self._eof and pending:
                raise AmiProtocolError("connection closed in the middle of an AMI message")


def _check_header(key: str, value: str) -> None:
    if not key:
        raise AmiProtocolError("AMI header with an empty key")
    if ":" in key or "\r" in key or "\n" in key:
        raise AmiProtocolError(f"AMI header key {key!r} contains ':' or CR/LF (header injection)")
    if "\r" in value or "\n" in value:
        raise AmiProtocolError(f"AMI header {key!r} value contains CR/LF (header injection)")


def encode_message(headers: Iterable[tuple[str, str]]) -> bytes:
    """Serialise headers as one AMI message: ``Key: Value\\r\\n`` lines, then ``\\r\\n``."""
    parts: list[str] = []
    for key, value in headers:
        _check_header(key, value)
        parts.append(f"{key}: {value}\r\n")
    if not parts:
        raise AmiProtocolError("an AMI message needs at least one header")
    parts.append("\r\n")
    try:
        return "".join(parts).encode(_ENCODING, _ERRORS)
    except UnicodeEncodeError as err:
        raise AmiProtocolError(f"AMI message is not encodable text: {err}") from err


def encode_action(
    action: str, action_id: str | None = None, fields: Iterable[tuple[str, str]] = ()
) -> bytes:
    """Serialise an action: ``Action`` first, then ``ActionID`` (if given), then `fields`."""
    headers: list[tuple[str, str]] = [("Action", action)]
    if action_id is not None:
        headers.append(("ActionID", action_id))
    headers.extend(fields)
    return encode_message(headers)
