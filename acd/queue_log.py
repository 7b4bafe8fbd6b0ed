"""Asterisk-compatible ``queue_log`` lines from the ACD event stream, and a rotation-safe writer.

Theory of operation
-------------------

Asterisk 22's ``app_queue.c`` writes one line per queue fact through ``ast_queue_log()``, which
``logger.c`` formats as ``epoch|callid|queuename|agent|event|data``; the data part is the event's
own ``|``-separated fields, as many as that event has (the realtime back-end splits them into
``data1``..``data5``). Existing reporting tools read exactly that, so :class:`QueueLogTranslator`
turns stream entries into the lines ``app_queue.c`` writes for the same facts:

====================  ==========================================  =================================
event                 data (app_queue.c)                           from
====================  ==========================================  =================================
ENTERQUEUE            url|callerid|position                        ItemEnqueued (call)
CONNECT               holdtime|bridged uniqueid|ringtime           ItemAssigned (call)
COMPLETECALLER/AGENT  holdtime|calltime|origposition               CallCompleted (``ended_by``)
                                                                   or ItemCompleted
BLINDTRANSFER         exten|context|holdtime|calltime|origpos      CallTransferred blind
ATTENDEDTRANSFER      BRIDGE|target|holdtime|calltime|origpos      CallTransferred attended
ABANDON               position|origposition|waittime               ItemCancelled abandoned
EXITWITHTIMEOUT       position|origposition|waittime               ItemCancelled timeout/expired
EXITEMPTY             position|origposition|waittime               ItemCancelled empty
EXITWITHKEY           key|position|origposition|waittime           ItemCancelled callback/key:<k>
EXITWITHTIMEOUT, then position|origposition|waittime in the source  ItemOverflowed (call)
ENTERQUEUE            url|callerid|position in the target queue
RINGNOANSWER          ringtime (ms)                                OfferMissed, OfferTimedOut
RINGCANCELED          ringtime (ms)                                cancel of an item being rung
ADDMEMBER             "" or PAUSED (callid MANAGER)                AgentLoggedIn
REMOVEMEMBER          "" (callid MANAGER)                          AgentLoggedOut
PAUSE/UNPAUSE         reason (callid NONE)                         AgentPaused / AgentMadeReady
PAUSEALL/UNPAUSEALL   reason (queue NONE), before the per-queue
====================  ==========================================  =================================

Times in the data are whole seconds except the ring times (ms), as in app_queue.c; the epoch is
the fact's ``at`` in seconds. ``callid`` is the caller channel's ``Uniqueid`` from ``CallQueued``
(else the item id); the bridged uniqueid comes from ``CallAnswered``. Positions are ours: the
original position is 1 + the calls of that queue waiting when the item entered, the position at
the end 1 + those still waiting that entered before it. The caller ID is left empty: caller
numbers never reach the stream. Only ``call`` items are logged (the file is Asterisk's view).

An overflow is written the way app_queue.c reports a caller whose ``Queue()`` timed out and whose
dialplan then queues it elsewhere: ``EXITWITHTIMEOUT`` in the source queue (position there, its
original position, the wait in that queue), then ``ENTERQUEUE`` in the target with the position
there, which becomes the original position for the target's later lines. Wait and hold times
in a queue count from entering *that* queue, as each ``Queue()`` in Asterisk starts its own
clock (``qe.start``); positions keep the item's place in the one fair order (its first enqueue).
A repeated entry (same id) writes nothing; a malformed one writes nothing and is counted.

Member lines name the agent by ``member_name(agent_id)`` (default: the id) and go to the queues
``member_queues(agent_id)`` returns (default: none, so only the ``...ALL`` forms and the member
lines under ``NONE``), since our agents are not members of fixed queues.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from acd.domain.call_events import LeaveReason
from acd.domain.stats import StreamEntry

__all__ = ["QueueLogLine", "QueueLogTranslator", "QueueLogWriter"]


@dataclass(frozen=True, slots=True)
class QueueLogLine:
    """One queue_log line."""

    epoch: int
    callid: str
    queue: str
    agent: str
    event: str
    data: tuple[str, ...] = ()

    def render(self) -> str:
        """The line as app_queue.c writes it, without the newline."""
        return "|".join(
            (str(self.epoch), self.callid, self.queue, self.agent, self.event, *self.data)
        )


@dataclass(slots=True)
class _Call:
    queue: str = ""
    callid: str = ""
    enq_ms: int = 0
    entered_ms: int = 0  # when it entered its current queue (an overflow), else enq_ms
    priority: int = 0
    seq: int = 0
    orig_pos: int = 1
    waiting: bool = False
    answered_ms: int | None = None
    peer: str = ""
    agent: str = ""
    done: bool = False
    offers: dict[str, tuple[str, int]] = field(default_factory=dict)


def _s(ms: int) -> str:
    return str(max(0, ms) // 1000)


class QueueLogTranslator:
    """Turns stream entries into queue_log lines (see the module docstring for the mapping)."""

    def __init__(
        self,
        *,
        member_name: Callable[[str], str] = lambda agent: agent,
        member_queues: Callable[[str], Sequence[str]] = lambda agent: (),
    ) -> None:
        self._member_name = member_name
        self._member_queues = member_queues
        self._calls: dict[str, _Call] = {}
        self._seen: set[str] = set()
        self._seq = 0
        self._paused: dict[str, bool] = {}
        self.rejected = 0

    def lines(self, entry: StreamEntry) -> list[QueueLogLine]:
        """The lines for one entry (none for a repeat, a malformed or an unrelated entry)."""
        if entry.event_id in self._seen:
            return []
        self._seen.add(entry.event_id)
        try:
            return self._lines(entry.kind, entry.at_ms, entry.fields)
        except (KeyError, ValueError):
            self.rejected += 1
            return []

    def _call(self, item: str) -> _Call:
        if not item:
            raise ValueError("empty item id")
        return self._calls.setdefault(item, _Call(callid=item))

    def _position(self, call: _Call) -> int:
        ahead = sum(
            1
            for other in self._calls.values()
            if other.waiting
            and other is not call
            and other.queue == call.queue
            and (-other.priority, other.enq_ms, other.seq) < (-call.priority, call.enq_ms, call.seq)
        )
        return ahead + 1

    def _lines(self, kind: str, at: int, f: Mapping[str, str]) -> list[QueueLogLine]:
        epoch = at // 1000
        if kind.startswith("Agent"):
            return self._member(kind, epoch, f)
        if kind == "CallQueued":
            call = self._call(f["item"])
            call.callid = f.get("unique_id") or call.callid
            return []
        if kind == "ItemEnqueued":
            if f.get("channel", "call") != "call":
                return []
            call = self._call(f["item"])
            if call.waiting or call.done:
                return []
            call.queue = f["queue"]
            call.enq_ms = int(f["enq"]) if f.get("enq") else at
            call.entered_ms = call.enq_ms
            call.priority = int(f.get("priority") or 0)
            self._seq += 1
            call.seq = self._seq
            call.orig_pos = self._position(call)
            call.waiting = True
            return [
                QueueLogLine(
                    epoch,
                    call.callid,
                    call.queue,
                    "NONE",
                    "ENTERQUEUE",
                    ("", "", str(call.orig_pos)),
                )
            ]
        known = self._calls.get(f.get("item", ""))
        if known is None or not known.queue:
            return []  # not a call we saw enter (a chat, an email, or from before we started)
        call = known
        if kind == "ItemOffered":
            call.offers[f["offer"]] = (f["agent"], at)
            return []
        if kind in ("OfferMissed", "OfferTimedOut"):
            agent, started = call.offers.pop(f.get("offer", ""), (f.get("agent", ""), at))
            return [self._ring(call, epoch, agent, "RINGNOANSWER", at - started)]
        if kind == "ItemOverflowed":
            return self._overflow(call, epoch, at, f["from"], f["to"])
        if kind == "ItemRequeued":
            call.offers.pop(f.get("offer", ""), None)
            return []
        if kind == "CallAnswered":
            call.answered_ms = at if call.answered_ms is None else call.answered_ms
            call.peer = f.get("peer_unique_id", "") or call.peer
            return []
        if kind == "ItemAssigned":
            if not call.waiting:
                return []
            agent, started = call.offers.pop(f.get("offer", ""), (f.get("agent", ""), at))
            answered = call.answered_ms if call.answered_ms is not None else at
            call.waiting, call.agent, call.answered_ms = False, agent, answered
            data = (_s(answered - call.entered_ms), call.peer, _s(answered - started))
            return [
                QueueLogLine(
                    epoch, call.callid, call.queue, self._member_name(agent), "CONNECT", data
                )
            ]
        if kind == "ItemCancelled":
            return self._leave(call, epoch, at, f.get("reason") or LeaveReason.CANCELLED.value)
        if kind in ("CallCompleted", "ItemCompleted", "CallTransferred"):
            return self._complete(call, kind, epoch, at, f)
        return []

    def _ring(self, call: _Call, epoch: int, agent: str, event: str, ms: int) -> QueueLogLine:
        return QueueLogLine(
            epoch, call.callid, call.queue, self._member_name(agent), event, (str(max(0, ms)),)
        )

    def _leave(self, call: _Call, epoch: int, at: int, reason: str) -> list[QueueLogLine]:
        if not call.waiting:
            return []
        out = [
            self._ring(call, epoch, agent, "RINGCANCELED", at - started)
            for agent, started in call.offers.values()
        ]
        pos, wait = str(self._position(call)), _s(at - call.entered_ms)
        call.waiting, call.done = False, True
        call.offers.clear()
        where = (call.callid, call.queue, "NONE")
        if reason == LeaveReason.ABANDONED:
            out.append(QueueLogLine(epoch, *where, "ABANDON", (pos, str(call.orig_pos), wait)))
        elif reason in (LeaveReason.TIMEOUT, LeaveReason.EXPIRED, LeaveReason.REFUSED):
            out.append(
                QueueLogLine(epoch, *where, "EXITWITHTIMEOUT", (pos, str(call.orig_pos), wait))
            )
        elif reason == LeaveReason.EMPTY:
            out.append(QueueLogLine(epoch, *where, "EXITEMPTY", (pos, str(call.orig_pos), wait)))
        elif reason == LeaveReason.CALLBACK or reason.startswith("key:"):
            key = reason.partition(":")[2]
            out.append(
                QueueLogLine(epoch, *where, "EXITWITHKEY", (key, pos, str(call.orig_pos), wait))
            )
        else:  # ended for a reason Asterisk has no line for: the caller is gone all the same
            out.append(QueueLogLine(epoch, *where, "ABANDON", (pos, str(call.orig_pos), wait)))
        return out

    def _overflow(
        self, call: _Call, epoch: int, at: int, source: str, target: str
    ) -> list[QueueLogLine]:
        if not call.waiting or call.queue != source or not target or target == source:
            return []  # a repeat of the move (another id), or not waiting in that queue
        position, wait = str(self._position(call)), _s(at - call.entered_ms)
        left = QueueLogLine(
            epoch,
            call.callid,
            source,
            "NONE",
            "EXITWITHTIMEOUT",
            (position, str(call.orig_pos), wait),
        )
        call.queue, call.entered_ms = target, at
        call.offers.clear()
        call.orig_pos = self._position(call)
        entered = QueueLogLine(
            epoch, call.callid, target, "NONE", "ENTERQUEUE", ("", "", str(call.orig_pos))
        )
        return [left, entered]

    def _complete(
        self, call: _Call, kind: str, epoch: int, at: int, f: Mapping[str, str]
    ) -> list[QueueLogLine]:
        if call.done or call.waiting or call.answered_ms is None:
            return []
        call.done = True
        agent = self._member_name(call.agent or f.get("agent", ""))
        hold, talk = _s(call.answered_ms - call.entered_ms), _s(at - call.answered_ms)
        if kind == "CallCompleted" and f.get("talk_ms"):
            talk = _s(int(f["talk_ms"]))
        where = (epoch, call.callid, call.queue, agent)
        if kind == "CallTransferred":
            if f.get("transfer") == "attended":
                data = ("BRIDGE", f.get("target", ""), hold, talk, str(call.orig_pos))
                return [QueueLogLine(*where, "ATTENDEDTRANSFER", data)]
            data = (f.get("exten", ""), f.get("context", ""), hold, talk, str(call.orig_pos))
            return [QueueLogLine(*where, "BLINDTRANSFER", data)]
        event = "COMPLETECALLER" if f.get("ended_by") == "caller" else "COMPLETEAGENT"
        return [QueueLogLine(*where, event, (hold, talk, str(call.orig_pos)))]

    def _member(self, kind: str, epoch: int, f: Mapping[str, str]) -> list[QueueLogLine]:
        agent_id = f["agent"]
        name = self._member_name(agent_id)
        queues = tuple(self._member_queues(agent_id))
        if kind == "AgentLoggedIn":
            paused = bool(f.get("pause"))
            self._paused[agent_id] = paused
            data = ("PAUSED" if paused else "",)
            return [
                QueueLogLine(epoch, "MANAGER", q, name, "ADDMEMBER", data)
                for q in queues or ("NONE",)
            ]
        if kind == "AgentLoggedOut":
            self._paused.pop(agent_id, None)
            return [
                QueueLogLine(epoch, "MANAGER", q, name, "REMOVEMEMBER", ("",))
                for q in queues or ("NONE",)
            ]
        if kind in ("AgentPaused", "AgentMadeReady"):
            paused = kind == "AgentPaused"
            if not paused and not self._paused.get(agent_id):
                return []  # made ready after a wrap-up or a miss: not an unpause
            self._paused[agent_id] = paused
            reason = f.get("reason", "") if paused else ""
            event = "PAUSE" if paused else "UNPAUSE"
            out = [QueueLogLine(epoch, "NONE", "NONE", name, event + "ALL", (reason,))]
            out += [QueueLogLine(epoch, "NONE", q, name, event, (reason,)) for q in queues]
            return out
        return []


class QueueLogWriter:
    """Appends lines to a queue_log file; reopens it when it was rotated away or truncated.

    Each batch is one ``write()`` on a file opened with ``O_APPEND``, so lines are never
    interleaved with another appender's; before each batch the path's inode is compared with the
    open file's, so ``logrotate`` (move, then create) is followed without a signal.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def _open(self) -> IO[str]:
        if self._file is not None:
            try:
                same = os.stat(self.path).st_ino == os.fstat(self._file.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return self._file
            self._file.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open)
        return self._file

    def write(self, lines: Iterable[QueueLogLine]) -> int:
        """Append the lines; how many."""
        text = [line.render() + "\n" for line in lines]
        if not text:
            return 0
        handle = self._open()
        handle.write("".join(text))
        handle.flush()
        return len(text)

    def close(self) -> None:
        """Close the file (it is reopened by the next write)."""
        if self._file is not None:
            self._file.close()
            self._file = None
