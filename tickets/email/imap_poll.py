"""IMAP polling: new messages of one mailbox folder into the inbound pipeline, at least once.

Theory of operation (RFC 3501 IMAP4rev1, RFC 6851 MOVE, RFC 4315 UIDPLUS; the stdlib
``imaplib`` client, its blocking calls run one after another on a thread of the connection's):

* :meth:`ImapPoller.run` loops connect -> LOGIN -> SELECT -> poll passes every ``interval`` ->
  on any failure close, log it once with the reason, back off (exponential, capped, jittered)
  and retry. Every socket wait has ``timeout`` (connect and each read). The password is never
  logged; the user name is masked like any e-mail address.
* A pass: ``UID SEARCH UNSEEN``, sizes by ``UID FETCH (RFC822.SIZE)``, then oldest UID first
  (a reply after the message it answers), each message fetched with ``BODY.PEEK[]`` (which,
  unlike ``BODY[]``, does not set ``\\Seen``) and handed to :meth:`InboundPipeline.deliver`,
  the very call the SMTP handler makes: same parsing, loop verdict, threading and desk.
* At least once: a message is marked ``\\Seen`` (then moved or deleted, if configured) only
  after ``deliver`` returned, i.e. after the desk committed it. A mark lost with the connection
  is remembered by UID (per UIDVALIDITY) and written on the next connection without delivering
  again; a new process re-takes such a message and the desk, idempotent per Message-ID and raw
  bytes, records a duplicate delivery only. Two nodes polling one mailbox rely on the same rule.
* Bad input, the SMTP path's outcomes: a message that cannot be parsed is stored raw and
  flagged by the desk. A message over ``max_message_bytes`` is refused as SMTP answers 552 and
  nothing of it is stored: it is never downloaded, left in the folder marked ``\\Seen`` and
  ``$CallcenterTooBig`` for an operator, and logged. A desk or database outage (``OSError``,
  SQLAlchemy ``OperationalError``/``InterfaceError``: SMTP's 451) ends the pass and is retried
  after the back-off with nothing marked; any other error on one message is retried on the
  next ``max_attempts - 1`` passes, then the message is left marked ``\\Seen`` and
  ``$CallcenterFailed`` and logged: never retried forever, never deleted.
* IMAP has no envelope: ``Return-Path`` (written by the delivering MTA; ``<>`` for a bounce)
  stands for MAIL FROM and ``Delivered-To``/``X-Original-To`` for the recipients.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import logging
import random
import re
import socket
import ssl
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
from enum import StrEnum
from typing import TypeVar

from sqlalchemy.exc import InterfaceError, OperationalError

from callcenter.logmask import mask_email
from tickets.email import EmailChannelError
from tickets.email.smtp_in import DEFAULT_MAX_MESSAGE_BYTES, InboundPipeline
from tickets.webhooks import backoff

__all__ = [
    "FAILED_KEYWORD",
    "TOO_BIG_KEYWORD",
    "AfterStore",
    "ImapCommandFailed",
    "ImapConnectionLost",
    "ImapLoginRefused",
    "ImapPollError",
    "ImapPollStats",
    "ImapPoller",
    "ImapSettings",
    "PassReport",
    "delivery_envelope",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

TOO_BIG_KEYWORD = "$CallcenterTooBig"
FAILED_KEYWORD = "$CallcenterFailed"
SEEN = "\\Seen"
DELETED = "\\Deleted"

#: Failures of the desk that mean "try again later" (SMTP's 451), not "this message is bad".
TRANSIENT_STORE_ERRORS: tuple[type[Exception], ...] = (OSError, OperationalError, InterfaceError)


class ImapPollError(EmailChannelError):
    """The mailbox could not be polled (the message says which server and why)."""

    error_id = "email-imap-failed"


class ImapLoginRefused(ImapPollError):
    """The server refused the user name or password."""

    error_id = "email-imap-login-refused"


class ImapConnectionLost(ImapPollError):
    """Connecting failed, timed out, or the connection dropped."""

    error_id = "email-imap-connection-lost"


class ImapCommandFailed(ImapPollError):
    """The server answered NO or BAD (a missing folder, an unsupported command)."""

    error_id = "email-imap-command-failed"


class AfterStore(StrEnum):
    """What happens to a message in the folder once the desk has stored it."""

    SEEN = "seen"  # marked \Seen, left in the folder
    MOVE = "move"  # marked \Seen, moved to ``move_to``
    DELETE = "delete"  # marked \Seen and \Deleted, expunged


@dataclass(frozen=True, slots=True)
class ImapSettings:
    host: str
    port: int = 993
    tls: bool = True
    username: str = ""
    password: str = field(default="", repr=False)
    folder: str = "INBOX"
    interval: float = 60.0
    timeout: float = 30.0  # each socket read/connect
    command_timeout: float = 300.0  # a whole command (a server may keep talking and never finish)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    batch: int = 100
    after_store: AfterStore = AfterStore.SEEN
    move_to: str = ""
    max_attempts: int = 3
    backoff_initial: float = 1.0
    backoff_max: float = 300.0

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("IMAP host must be set")
        if min(self.interval, self.timeout, self.command_timeout, self.backoff_initial) <= 0:
            raise ValueError(
                "IMAP interval, timeout, command_timeout and backoff_initial must be positive"
            )
        if self.batch < 1 or self.max_attempts < 1:
            raise ValueError("IMAP batch and max_attempts must be at least 1")
        if self.after_store is AfterStore.MOVE and not self.move_to:
            raise ValueError("IMAP after_store=move needs move_to")
        if not (self.folder + self.move_to).isascii():
            raise ValueError("IMAP folder names must be ASCII (modified UTF-7 is not supported)")

    @property
    def where(self) -> str:
        """``host:port/folder as user`` for log lines (the user masked)."""
        return f"{self.host}:{self.port}/{self.folder} as {_mask_user(self.username)}"


@dataclass(slots=True)
class ImapPollStats:
    """Counters since start (for tests and metrics)."""

    connects: int = 0
    passes: int = 0
    stored: int = 0
    too_big: int = 0
    given_up: int = 0
    failures: int = 0
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class PassReport:
    """One pass: messages stored, refused as too big, given up, and still waiting."""

    stored: int = 0
    too_big: int = 0
    given_up: int = 0
    remaining: int = 0


def _mask_user(username: str) -> str:
    return mask_email(username) if "@" in username else username


def _quote(mailbox: str) -> str:
    """An IMAP quoted string (RFC 3501 ``quoted``) for a folder name."""
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _addresses(values: Sequence[str]) -> list[str]:
    return [address for _, address in getaddresses(list(values)) if address]


def delivery_envelope(raw: bytes) -> tuple[str | None, tuple[str, ...]]:
    """(envelope sender, recipients) from the delivering MTA's headers; ``''`` is ``<>``.

    Only the header block is read; a message without ``Return-Path`` has no known envelope
    sender (None), as one appended by hand.
    """
    end = min((i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0), default=-1)
    head = BytesHeaderParser(policy=compat32).parsebytes(raw if end < 0 else raw[: end + 2])
    sender: str | None = None
    return_path = head.get_all("Return-Path") or []
    if return_path:
        value = str(return_path[0]).strip()
        found = _addresses([value])
        sender = found[0] if found else ("" if value.strip("<> ") == "" else None)
    recipients = _addresses([str(v) for v in head.get_all("Delivered-To") or []])
    recipients += _addresses([str(v) for v in head.get_all("X-Original-To") or []])
    return sender, tuple(dict.fromkeys(r.lower() for r in recipients))


_FETCH_UID = re.compile(rb"\bUID (\d+)")
_FETCH_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")


class _Connection:
    """One blocking imaplib session on the folder; every imaplib failure becomes ImapPollError."""

    def __init__(self, settings: ImapSettings, ssl_context: ssl.SSLContext | None) -> None:
        self.settings = settings
        self.ssl_context = ssl_context
        self.imap: imaplib.IMAP4 | None = None
        self.uidvalidity = 0
        self.capabilities: frozenset[str] = frozenset()
        self.keywords = False
        # every step, close included, runs on this connection's own thread, one after another
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imap-poll")

    # -- helpers --------------------------------------------------------------------------------
    def _client(self) -> imaplib.IMAP4:
        if self.imap is None:
            raise ImapConnectionLost(f"IMAP {self.settings.where}: not connected")
        return self.imap

    def _run(self, what: str, call: Callable[[], tuple[str, Sequence[object]]]) -> list[object]:
        try:
            status, data = call()
        except (imaplib.IMAP4.abort, OSError, EOFError) as err:
            raise ImapConnectionLost(
                f"IMAP {self.settings.where}: connection lost during {what}: {err}"
            ) from err
        except imaplib.IMAP4.error as err:
            raise ImapCommandFailed(f"IMAP {self.settings.where}: {what} refused: {err}") from err
        if status != "OK":
            text = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
            raise ImapCommandFailed(f"IMAP {self.settings.where}: {what} answered {status} {text}")
        return list(data)

    # -- session --------------------------------------------------------------------------------
    def open(self) -> None:
        s = self.settings
        imap: imaplib.IMAP4
        try:
            if s.tls:
                context = self.ssl_context or ssl.create_default_context()
                imap = imaplib.IMAP4_SSL(s.host, s.port, ssl_context=context, timeout=s.timeout)
            else:
                imap = imaplib.IMAP4(s.host, s.port, timeout=s.timeout)
        except (imaplib.IMAP4.error, OSError, EOFError) as err:
            raise ImapConnectionLost(f"IMAP {s.where}: cannot connect: {err}") from err
        self.imap = imap
        try:
            imap.login(s.username, s.password)
        except imaplib.IMAP4.abort as err:
            raise ImapConnectionLost(f"IMAP {s.where}: connection lost at login: {err}") from err
        except imaplib.IMAP4.error as err:
            raise ImapLoginRefused(f"IMAP {s.where}: login refused: {err}") from err
        except (OSError, EOFError) as err:
            raise ImapConnectionLost(f"IMAP {s.where}: connection lost at login: {err}") from err
        data = self._run("CAPABILITY", imap.capability)
        words = b" ".join(d for d in data if isinstance(d, bytes)).upper().split()
        self.capabilities = frozenset(w.decode("ascii", "replace") for w in words)
        if s.after_store is AfterStore.MOVE:  # a missing target fails here, not after a store
            target = _quote(s.move_to)
            self._run(f"STATUS {s.move_to}", lambda: imap.status(target, "(MESSAGES)"))
        self._run(f"SELECT {s.folder}", lambda: imap.select(_quote(s.folder)))
        validity = imap.response("UIDVALIDITY")[1]
        self.uidvalidity = int(validity[0]) if validity and validity[0] else 0
        permanent = imap.response("PERMANENTFLAGS")[1]
        self.keywords = any(isinstance(p, bytes) and b"\\*" in p for p in permanent)

    def abort(self) -> None:
        """Shut the socket down from any thread: a command blocked on it returns at once."""
        imap = self.imap
        sock = getattr(imap, "sock", None) if imap is not None else None
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # not SSLSocket's: no TLS state

    async def call(self, fn: Callable[..., T], *args: object) -> T:
        """Run one blocking step on the connection's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    def release(self) -> None:
        """From the event loop, without waiting: unblock the step in progress, then close.

        The close is queued behind that step on the connection's thread, so it runs even when
        the caller is being cancelled, and after a connect still in progress.
        """
        self.abort()
        self._worker.submit(self._close)
        self._worker.shutdown(wait=False)

    def _close(self) -> None:
        """Close the connection (no LOGOUT round trip); never raises."""
        imap, self.imap = self.imap, None
        if imap is not None:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                imap.shutdown()

    # -- commands -------------------------------------------------------------------------------
    def unseen(self) -> list[int]:
        data = self._run("UID SEARCH UNSEEN", lambda: self._client().uid("SEARCH", "UNSEEN"))
        return sorted({int(n) for d in data if isinstance(d, bytes) for n in d.split()})

    def sizes(self, uids: Sequence[int]) -> dict[int, int]:
        wanted = ",".join(str(u) for u in uids)
        data = self._run(
            "UID FETCH RFC822.SIZE", lambda: self._client().uid("FETCH", wanted, "(RFC822.SIZE)")
        )
        out: dict[int, int] = {}
        for item in data:
            line = item[0] if isinstance(item, tuple) else item
            if not isinstance(line, bytes):
                continue
            uid, size = _FETCH_UID.search(line), _FETCH_SIZE.search(line)
            if uid and size:
                out[int(uid.group(1))] = int(size.group(1))
        return out

    def fetch(self, uid: int) -> bytes | None:
        """The message's raw bytes, or None if it is gone (expunged by someone else)."""
        data = self._run(
            f"UID FETCH {uid} BODY.PEEK[]",
            lambda: self._client().uid("FETCH", str(uid), "(BODY.PEEK[])"),
        )
        for item in data:
            if isinstance(item, tuple) and len(item) == 2:
                head, body = item
                match = _FETCH_UID.search(head) if isinstance(head, bytes) else None
                if match and int(match.group(1)) == uid and isinstance(body, bytes):
                    return body
        return None

    def flag(self, uid: int, flags: Sequence[str]) -> None:
        wanted = [f for f in flags if not f.startswith("$") or self.keywords]
        self._run(
            f"UID STORE {uid} {' '.join(wanted)}",
            lambda: self._client().uid("STORE", str(uid), "+FLAGS.SILENT", f"({' '.join(wanted)})"),
        )

    def _expunge(self, uid: int) -> None:
        imap = self._client()
        if "UIDPLUS" in self.capabilities:
            self._run(f"UID EXPUNGE {uid}", lambda: imap.uid("EXPUNGE", str(uid)))
        else:
            self._run("EXPUNGE", imap.expunge)

    def relocate(self, uid: int) -> None:
        """Apply ``after_store`` to a stored (already \\Seen) message."""
        s = self.settings
        imap = self._client()
        if s.after_store is AfterStore.MOVE:
            target = _quote(s.move_to)
            if "MOVE" in self.capabilities:
                self._run(f"UID MOVE {uid} {s.move_to}", lambda: imap.uid("MOVE", str(uid), target))
                return
            self._run(f"UID COPY {uid} {s.move_to}", lambda: imap.uid("COPY", str(uid), target))
        if s.after_store in (AfterStore.MOVE, AfterStore.DELETE):
            self.flag(uid, (DELETED,))
            self._expunge(uid)


class _Outcome(StrEnum):
    STORED = "stored"
    TOO_BIG = "too_big"
    GIVEN_UP = "given_up"


@dataclass(frozen=True, slots=True)
class _Mark:
    """What is still to be written on the server for a message already dealt with."""

    flags: tuple[str, ...]
    relocate: bool
    outcome: _Outcome


class ImapPoller:
    """Polls one IMAP folder into ``pipeline`` until cancelled (see the module docstring)."""

    def __init__(
        self,
        pipeline: InboundPipeline,
        settings: ImapSettings,
        *,
        ssl_context: ssl.SSLContext | None = None,
        transient_errors: tuple[type[Exception], ...] = TRANSIENT_STORE_ERRORS,
        rng: random.Random | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self.stats = ImapPollStats()
        self._ssl_context = ssl_context
        self._transient = transient_errors
        self._random = rng or random.Random()
        self._marks: dict[tuple[int, int], _Mark] = {}  # (uidvalidity, uid) -> still to write
        self._attempts: dict[tuple[int, int], int] = {}

    async def run(self) -> None:
        """Connect, poll, and on any failure back off with jitter and retry, until cancelled."""
        failures = 0
        while True:
            connection = _Connection(self.settings, self._ssl_context)
            try:
                await self._io(connection, connection.open)
                self.stats.connects += 1
                log.info("IMAP polling %s every %g s", self.settings.where, self.settings.interval)
                while True:
                    report = await self.poll_once(connection)
                    failures = 0
                    if report.remaining == 0:
                        await asyncio.sleep(self.settings.interval)
            except ImapConnectionLost as err:
                failures += 1
                self._failed(logging.WARNING, str(err), failures)
            except ImapPollError as err:  # refused login, missing folder: the operator must act
                failures += 1
                self._failed(logging.ERROR, str(err), failures)
            except self._transient as err:
                failures += 1
                what = f"IMAP {self.settings.where}: help desk could not store mail: {err!r}"
                self._failed(logging.WARNING, what, failures)
            except Exception as err:  # a bug must not end polling; logged with its traceback
                failures += 1
                what = f"IMAP {self.settings.where}: polling failed: {err!r}"
                self._failed(logging.ERROR, what, failures, traceback=True)
            finally:
                connection.release()
            await asyncio.sleep(self._delay(failures))

    async def _io(self, connection: _Connection, fn: Callable[..., T], *args: object) -> T:
        """Run one blocking IMAP step in a thread, within ``command_timeout``."""
        limit = self.settings.command_timeout
        try:
            async with asyncio.timeout(limit):
                return await connection.call(fn, *args)
        except TimeoutError as err:
            connection.abort()  # the thread's read returns; its result is dropped
            raise ImapConnectionLost(
                f"IMAP {self.settings.where}: no complete answer within {limit:g} s"
            ) from err

    def _delay(self, failures: int) -> float:
        s = self.settings
        delay = backoff(failures, base=s.backoff_initial, cap=s.backoff_max).total_seconds()
        return delay * self._random.uniform(0.5, 1.0)

    def _failed(self, level: int, reason: str, failures: int, *, traceback: bool = False) -> None:
        self.stats.failures += 1
        self.stats.last_error = reason
        log.log(
            level, "%s; retrying (failure %d), nothing lost", reason, failures, exc_info=traceback
        )

    async def poll_once(self, connection: _Connection) -> PassReport:
        """One pass on an open connection: marks still owed first, then the unseen messages."""
        s = self.settings
        validity = connection.uidvalidity
        for key in [k for k in self._marks if k[0] != validity]:
            del self._marks[key]  # UIDVALIDITY changed: those UIDs name other messages now
        counts = dict.fromkeys(_Outcome, 0)
        for key in sorted(self._marks):  # stored (or given up) before a connection was lost
            await self._write(connection, key, counts)
        unseen = await self._io(connection, connection.unseen)
        batch = unseen[: s.batch]
        sizes = await self._io(connection, connection.sizes, batch) if batch else {}
        for uid in batch:
            key = (validity, uid)
            mark = await self._take(connection, key, sizes.get(uid))
            if mark is not None:
                self._marks[key] = mark  # owed until written, even across a reconnect
                await self._write(connection, key, counts)
        self.stats.passes += 1
        return PassReport(
            stored=counts[_Outcome.STORED],
            too_big=counts[_Outcome.TOO_BIG],
            given_up=counts[_Outcome.GIVEN_UP],
            remaining=max(len(unseen) - s.batch, 0),
        )

    async def _write(
        self, connection: _Connection, key: tuple[int, int], counts: dict[_Outcome, int]
    ) -> None:
        uid, mark = key[1], self._marks[key]
        await self._io(connection, connection.flag, uid, mark.flags)
        if mark.relocate:
            await self._io(connection, connection.relocate, uid)
        del self._marks[key]
        counts[mark.outcome] += 1

    async def _take(
        self, connection: _Connection, key: tuple[int, int], size: int | None
    ) -> _Mark | None:
        """Fetch and deliver one message; the mark to write, or None to leave it for later."""
        s = self.settings
        uid = key[1]
        if size is None:
            return None  # expunged since the search
        raw = (
            None
            if size > s.max_message_bytes
            else await self._io(connection, connection.fetch, uid)
        )
        if size > s.max_message_bytes or (raw is not None and len(raw) > s.max_message_bytes):
            log.error(
                "IMAP %s: message UID %d is %d bytes, over the %d-byte limit: not stored "
                "(SMTP refuses it with 552); left in the folder flagged %s",
                s.where,
                uid,
                max(size, len(raw or b"")),
                s.max_message_bytes,
                TOO_BIG_KEYWORD,
            )
            self.stats.too_big += 1
            return _Mark((SEEN, TOO_BIG_KEYWORD), relocate=False, outcome=_Outcome.TOO_BIG)
        if raw is None:
            return None
        envelope_sender, recipients = delivery_envelope(raw)
        try:
            await self.pipeline.deliver(raw, envelope_sender=envelope_sender, recipients=recipients)
        except self._transient:
            raise  # the desk is down: end the pass, nothing marked, retried after the back-off
        except Exception as err:  # this message's own problem: bounded retries, then given up
            attempts = self._attempts[key] = self._attempts.get(key, 0) + 1
            if attempts < s.max_attempts:
                log.warning(
                    "IMAP %s: message UID %d not stored (attempt %d of %d): %r",
                    s.where,
                    uid,
                    attempts,
                    s.max_attempts,
                    err,
                )
                return None
            del self._attempts[key]
            log.error(
                "IMAP %s: message UID %d not stored after %d attempts (%r); given up, left in "
                "the folder flagged %s",
                s.where,
                uid,
                attempts,
                err,
                FAILED_KEYWORD,
            )
            self.stats.given_up += 1
            return _Mark((SEEN, FAILED_KEYWORD), relocate=False, outcome=_Outcome.GIVEN_UP)
        self._attempts.pop(key, None)
        self.stats.stored += 1
        relocate = s.after_store is not AfterStore.SEEN
        return _Mark((SEEN,), relocate=relocate, outcome=_Outcome.STORED)
