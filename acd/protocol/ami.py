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
  line, so a message ends at the first ``\\r\\n\\r\\n``. Framing is therefore a single
  ``bytearray.find(b"\\r\\n\\r\\n", offset)``; the offset is remembered between calls, so a
  message that arrives one byte at a time is scanned once in total, not once per byte.
* Each line is split on the **first** ``": "`` only: values contain ``": "``, ``/``, ``;``,
  ``@``, ``(``, ``)`` and spaces. An empty value keeps its space (``AccountCode: ``); a bare
  ``Key:`` is accepted too. Both give ``""``. Any other line without ``": "`` is an
  :class:`AmiProtocolError` (none occurs in the traces: Asterisk 22 sends ``Command`` output
  as repeated ``Output:`` headers, not as a raw body).
* Keys may repeat (``Output:``, ``Variable:``), so a message is an ordered tuple of
  ``(key, value)`` pairs, never a dict. Lookups are case-insensitive and take the first match.
* TCP splits and merges messages arbitrarily; :meth:`AmiDecoder.receive_data` only appends,
  and :meth:`AmiDecoder.next_event` returns ``None`` until a whole message is buffered.
* Robustness: empty lines *between* messages are skipped (as h11 does for HTTP); more than
  ``max_message_bytes`` without a terminator is an error instead of unbounded buffering;
  ``receive_data(b"")`` marks EOF, after which a partial message is an error. After an error
  the decoder stays broken and raises the same error again.
* Bytes are decoded as UTF-8 with ``surrogateescape`` (the traces are all ASCII), so any byte
  sequence survives a decode/encode round trip.
"""

from __future__ import annotations

from collections.abc import Iterable
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


@dataclass(frozen=True, slots=True)
class AmiMessage:
    """One AMI message (action, response or event): its headers in wire order, repeats kept."""

    headers: tuple[tuple[str, str], ...]
    _index: dict[str, str] | None = field(
        default=None, init=False, repr=False, compare=False, hash=False
    )

    def _lookup(self) -> dict[str, str]:
        index = self._index
        if index is None:
            index = {}
            for key, value in self.headers:
                index.setdefault(key.lower(), value)
            object.__setattr__(self, "_index", index)
        return index

    def get(self, key: str, default: str | None = None) -> str | None:
        """The value of the first header named `key` (case-insensitive), else `default`."""
        return self._lookup().get(key.lower(), default)

    def get_all(self, key: str) -> list[str]:
        """Every value of the headers named `key` (case-insensitive), in wire order."""
        wanted = key.lower()
        return [value for name, value in self.headers if name.lower() == wanted]

    def __getitem__(self, key: str) -> str:
        try:
            return self._lookup()[key.lower()]
        except KeyError:
            raise KeyError(key) from None

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._lookup()

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


def _parse_headers(text: str) -> tuple[tuple[str, str], ...]:
    """Split a message body (without its final CRLFCRLF) into (key, value) pairs."""
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
    return tuple(headers)


class AmiDecoder:
    """Incremental AMI stream decoder: feed bytes with receive_data(), pull with next_event()."""

    __slots__ = ("_buf", "_eof", "_error", "_expect_banner", "_max", "_pos", "_scan")

    def __init__(self, *, expect_banner: bool = True, max_message_bytes: int = 1 << 20) -> None:
        if max_message_bytes < 1:
            raise ValueError("max_message_bytes must be positive")
        self._buf = bytearray()
        self._pos = 0  # start of the first unconsumed byte
        self._scan = 0  # where the terminator search resumes (absolute index in _buf)
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
        return len(self._buf) - self._pos

    def receive_data(self, data: bytes) -> None:
        """Append bytes read from the socket; b"" means the peer closed (EOF)."""
        if self._eof:
            if data:
                raise AmiProtocolError("AMI data received after EOF")
            return
        if not data:
            self._eof = True
            return
        if self._pos:
            # Compact: drop consumed bytes. Only a partial message remains, so this is cheap.
            del self._buf[: self._pos]
            self._scan -= self._pos
            self._pos = 0
        self._buf += data

    def next_event(self) -> AmiBanner | AmiMessage | None:
        """The next complete banner or message, or None if more data is needed."""
        if self._error is not None:
            raise self._error
        try:
            if self._expect_banner:
                return self._next_banner()
            return self._next_message()
        except AmiProtocolError as err:
            self._error = err
            raise

    def _fail_if_too_long_or_truncated(self, what: str) -> None:
        pending = len(self._buf) - self._pos
        if pending > self._max:
            raise AmiProtocolError(f"AMI {what} longer than {self._max} bytes without a terminator")
        if self._eof and pending:
            raise AmiProtocolError(f"connection closed in the middle of an AMI {what}")

    def _next_banner(self) -> AmiBanner | None:
        buf = self._buf
        end = buf.find(_EOL, max(self._scan, self._pos))
        if end < 0:
            self._scan = max(len(buf) - 1, self._pos)
            self._fail_if_too_long_or_truncated("banner line")
            return None
        if end - self._pos > self._max:
            raise AmiProtocolError(f"AMI banner line longer than {self._max} bytes")
        text = buf[self._pos : end].decode(_ENCODING, _ERRORS)
        if ": " in text:
            raise AmiProtocolError(f"expected the AMI banner line, got a header: {text[:80]!r}")
        self._pos = self._scan = end + 2
        self._expect_banner = False
        return AmiBanner(text)

    def _next_message(self) -> AmiMessage | None:
        buf = self._buf
        pos = self._pos
        # Skip empty lines between messages.
        while buf.startswith(_EOL, pos):
            pos += 2
        self._pos = pos
        if self._scan < pos:
            self._scan = pos
        end = buf.find(_EOM, self._scan)
        if end < 0:
            # Resume 3 bytes back: the terminator may straddle the next chunk boundary.
            self._scan = max(len(buf) - 3, pos)
            self._fail_if_too_long_or_truncated("message")
            return None
        if end - pos > self._max:
            raise AmiProtocolError(f"AMI message longer than {self._max} bytes")
        text = buf[pos:end].decode(_ENCODING, _ERRORS)
        self._pos = self._scan = end + 4
        return AmiMessage(_parse_headers(text))


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
