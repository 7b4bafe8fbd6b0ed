"""Agent answers from the owned AMI link: ``DialEnd`` ANSWER of a caller channel -> the ACD.

The caller's AGI session dials the reserved agent with ``EXEC Dial``, which returns only when the
call ends; Asterisk announces the answer itself at once on AMI (``DialEnd`` with ``DialStatus:
ANSWER``, ``Channel`` = the channel running Dial, i.e. the AGI's channel, whose ``Uniqueid`` is
the ``WorkRequest.unique_id`` the item was queued with; ``/work/shared/asterisk-traces/
agent-dial.ami.jsonl``). :class:`DialAnswers` watches the link's items (:meth:`observe` is the
callback the PBX monitor calls for every item; it only enqueues, bounded) and :meth:`run` reports
each answer to the service (``answered_channel``: idempotent, so the AGI's own later report and
repeated events change nothing). Other statuses are left to the AGI session (it reads
``DIALSTATUS`` when Dial returns: NOANSWER / BUSY requeue the item, CANCEL ends it).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from acd.adapters.ami_link import LinkItem
from acd.domain.pbx_events import DialEnd
from acd.errors import AcdError

__all__ = ["AnswerSink", "DialAnswers"]

_log = logging.getLogger(__name__)


class AnswerSink(Protocol):
    """What the watcher reports to (:class:`acd.service.AcdService`)."""

    async def answered_channel(self, unique_id: str) -> bool:
        """The agent dialled by caller channel ``unique_id`` answered; False if no item."""
        ...


class DialAnswers:
    """``DialEnd`` ANSWER events -> :meth:`AnswerSink.answered_channel`; see the module doc."""

    def __init__(self, sink: AnswerSink, *, queue_size: int = 1000) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self._sink = sink
        self._queue: asyncio.Queue[str] = asyncio.Queue(queue_size)
        self.reported = 0
        self.unknown = 0
        self.dropped = 0

    def observe(self, item: LinkItem) -> None:
        """Callback for every item of the link (cheap; enqueues answers only)."""
        if not isinstance(item, DialEnd) or item.dial_status.upper() != "ANSWER":
            return
        if item.channel is None or not item.channel.unique_id:
            return  # an originate's DialEnd: no caller channel ran Dial
        try:
            self._queue.put_nowait(item.channel.unique_id)
        except asyncio.QueueFull:
            self.dropped += 1  # the AGI session still reports the answer when Dial returns
            _log.warning("answer of channel %s dropped: queue full", item.channel.unique_id)

    async def run(self) -> None:
        """Report answers until cancelled; a failed report is logged (the AGI path remains)."""
        while True:
            unique_id = await self._queue.get()
            try:
                if await self._sink.answered_channel(unique_id):
                    self.reported += 1
                else:
                    self.unknown += 1
            except AcdError as err:
                _log.warning("answer of channel %s not reported: %s", unique_id, err)
