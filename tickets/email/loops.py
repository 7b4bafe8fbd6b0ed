"""Auto-reply and mail-loop protection (pure): is this message automated, may we answer it?

Theory of operation. RFC 3834 ("Recommendations for Automatic Responses to Electronic Mail")
says an automatic responder must not answer a message that is itself automatic
(``Auto-Submitted`` other than ``no``), that comes from a null reverse-path (bounces, RFC 5321
section 4.5.5), from a list (``List-Id``, RFC 2919; ``Precedence: list/bulk/junk``, RFC 2076)
or from a mailer-daemon. Widely used non-standard markers are honoured too: ``X-Autoreply``,
``X-Autorespond``, Microsoft's ``X-Auto-Response-Suppress`` and out-of-office subject lines.
Every message we send carries our own ``X-Callcenter-Loop`` header; a message that comes back
with it is a loop. A per-sender rate limit catches responders that set none of these headers.

The verdict never drops anything: automated mail is still recorded on a ticket; only the
automatic notification (acknowledgement) back to the sender is suppressed.
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from dataclasses import dataclass, replace
from enum import StrEnum

from tickets.email.parse import ParsedMessage

__all__ = [
    "LOOP_HEADER",
    "AutoKind",
    "LoopVerdict",
    "SenderRateLimiter",
    "classify",
]

LOOP_HEADER = "X-Callcenter-Loop"

_DAEMON_LOCALS = frozenset({"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon"})
_NOREPLY = re.compile(r"^(no[-_.]?reply|do[-_.]?not[-_.]?reply|bounces?|notifications?)([-+_.]|$)")
_AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort|svar)\b|out of (the )?office\b|"
    r"abwesenheitsnotiz|r[ée]ponse automatique|autosvar|undeliverable:|"
    r"delivery status notification|mail delivery (failed|system))",
    re.IGNORECASE,
)


class AutoKind(StrEnum):
    """Why a message is considered automated, most severe first."""

    OWN_LOOP = "own-loop"
    BOUNCE = "bounce"
    AUTO_REPLY = "auto-reply"
    AUTO_GENERATED = "auto-generated"
    LIST = "list"
    BULK = "bulk"
    RATE_LIMITED = "rate-limited"
    HUMAN = "human"


_SEVERITY = {kind: rank for rank, kind in enumerate(AutoKind)}


@dataclass(frozen=True, slots=True)
class LoopVerdict:
    """The classification and whether an automatic notification may be sent to the sender."""

    kind: AutoKind
    notify: bool
    reasons: tuple[str, ...] = ()

    @property
    def automated(self) -> bool:
        return self.kind is not AutoKind.HUMAN

    def without_notification(self, reason: str) -> LoopVerdict:
        """The same verdict with the notification suppressed for ``reason``."""
        return replace(self, notify=False, reasons=(*self.reasons, reason))

    def rate_limited(self) -> LoopVerdict:
        return replace(
            self,
            kind=AutoKind.RATE_LIMITED if self.kind is AutoKind.HUMAN else self.kind,
            notify=False,
            reasons=(*self.reasons, "sender-rate-limit"),
        )


def classify(
    message: ParsedMessage,
    *,
    envelope_sender: str | None,
    loop_id: str,
    own_addresses: frozenset[str] = frozenset(),
) -> LoopVerdict:
    """Classify ``message``; ``envelope_sender`` is the SMTP MAIL FROM ('' for the null path)."""
    found: list[tuple[AutoKind, str]] = []

    def hit(kind: AutoKind, reason: str) -> None:
        found.append((kind, reason))

    loop = message.header(LOOP_HEADER)
    if loop is not None:
        hit(AutoKind.OWN_LOOP, "loop-header-ours" if loop.strip() == loop_id else "loop-header")
    x_loop = (message.header("x-loop") or "").strip().lower()
    if x_loop and x_loop in own_addresses:
        hit(AutoKind.OWN_LOOP, "x-loop-ours")
    sender = (message.from_address or "").lower()
    if sender and sender in own_addresses:
        hit(AutoKind.OWN_LOOP, "from-our-address")

    auto_submitted = (message.header("auto-submitted") or "").split(";")[0].strip().lower()
    if auto_submitted and auto_submitted != "no":
        kind = AutoKind.AUTO_REPLY if auto_submitted == "auto-replied" else AutoKind.AUTO_GENERATED
        hit(kind, f"auto-submitted:{auto_submitted}")
    for name in ("x-autoreply", "x-autorespond", "x-autoresponse", "x-autoreply-from"):
        if message.header(name) is not None:
            hit(AutoKind.AUTO_REPLY, name)
    suppress = (message.header("x-auto-response-suppress") or "").lower()
    if "all" in suppress.replace(" ", "").split(","):
        hit(AutoKind.AUTO_GENERATED, "x-auto-response-suppress")
    precedence = (message.header("precedence") or "").strip().lower()
    if precedence in ("bulk", "junk"):
        hit(AutoKind.BULK, f"precedence:{precedence}")
    elif precedence == "list":
        hit(AutoKind.LIST, "precedence:list")
    elif precedence == "auto_reply":
        hit(AutoKind.AUTO_REPLY, "precedence:auto_reply")
    if message.header("list-id") is not None:
        hit(AutoKind.LIST, "list-id")
    if message.header("list-unsubscribe") is not None:
        hit(AutoKind.BULK, "list-unsubscribe")

    if envelope_sender == "":
        hit(AutoKind.BOUNCE, "null-reverse-path")
    content_type = (message.header("content-type") or "").lower()
    if "multipart/report" in content_type:
        hit(AutoKind.BOUNCE, "delivery-report")
    for address in (sender, (envelope_sender or "").lower()):
        local = address.rpartition("@")[0]
        if local in _DAEMON_LOCALS:
            hit(AutoKind.BOUNCE, f"daemon-sender:{local}")
        elif local and _NOREPLY.match(local):
            hit(AutoKind.AUTO_GENERATED, "noreply-sender")
    if _AUTO_SUBJECT.match(message.subject):
        hit(AutoKind.AUTO_REPLY, "auto-reply-subject")

    if not found:
        return LoopVerdict(AutoKind.HUMAN, notify=True)
    kind = min((k for k, _ in found), key=_SEVERITY.__getitem__)
    reasons = tuple(dict.fromkeys(reason for _, reason in found))
    return LoopVerdict(kind, notify=False, reasons=reasons)


class SenderRateLimiter:
    """At most ``limit`` automatic notifications per sender in a sliding ``window_s`` seconds.

    Pure and clock-injected (``now`` is any monotonic seconds value); memory is bounded by
    ``max_senders`` (least recently seen senders are forgotten first).
    """

    def __init__(self, limit: int = 10, window_s: float = 3600.0, max_senders: int = 50_000):
        if limit < 1 or window_s <= 0 or max_senders < 1:
            raise ValueError("limit, window_s and max_senders must be positive")
        self.limit = limit
        self.window_s = window_s
        self.max_senders = max_senders
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, sender: str, now: float) -> bool:
        """Record one notification for ``sender`` at ``now``; False when over the limit."""
        key = sender.lower()
        hits = self._hits.pop(key, None) or deque()
        while hits and now - hits[0] >= self.window_s:
            hits.popleft()
        allowed = len(hits) < self.limit
        if allowed:
            hits.append(now)
        self._hits[key] = hits
        while len(self._hits) > self.max_senders:
            self._hits.popitem(last=False)
        return allowed
