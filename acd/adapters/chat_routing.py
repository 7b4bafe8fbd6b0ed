"""The chat channel's router on the ACD: each chat a work item on a chat queue, taken on reserve.

Theory of operation
-------------------

:meth:`AcdChatRouting.offer` queues the chat as the item ``chat-<chat id>`` on the chat queue the
widget asked for (``ChatWorkItem.queue``, when the ACD configuration has a chat queue of that
id; the first chat queue otherwise), with the chat's skills (minimum level 1) and language, and
waits for the ACD to reserve an agent with chat capacity. A chat has nobody to ring: it is
accepted as soon as the agent is reserved (:meth:`AcdService.answered`), so the agent is on
work at once and the chat is theirs (agent id = the agent's user name in the web app). An agent
who is logged in to the ACD but has no console socket open here (``present``, the web app's
chat hub) cannot see the chat: the offer counts as not answered (:meth:`AcdService.no_answer`:
the item goes back to the head of its queue, the agent is marked missed and paused after
``pause_after_misses``), as a phone that does not pick up. While it
waits, the visitor hears its position and expected wait (:meth:`AcdService.wait_status`) each
time they change. When nobody who could take it is staffed (no agent logged in and not paused
matches the queue's rule), or the queue turned it away (maximum wait, business hours), the
chat is not queued any longer and ``offer`` answers None: the widget's offline-message path.

:meth:`AcdChatRouting.ended` ends the item whatever became of it: a chat still waiting or
offered is cancelled (abandoned: the visitor left first), an answered one is completed
(:meth:`AcdService.hung_up`), which frees the agent's chat capacity and starts the queue's
wrap-up. Both are idempotent, so a repeat (two nodes, a retry) changes nothing.

With ``owners`` (:class:`~acd.adapters.chat_sweeper.ChatOwners`, the node wires it) each chat's
item is recorded as this node process's before it is queued and forgotten when it ends, so
that if the process dies without ending its chats, the :class:`~acd.adapters.chat_sweeper.
ChatSweeper` of any node ends them and frees the agents' chat capacity.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from acd.adapters.chat_sweeper import ITEM_PREFIX, ChatOwners, end_item
from acd.domain.call_events import LeaveReason
from acd.domain.work import Channel
from acd.errors import AcdError
from acd.service import AcdService, ItemEnded, WorkRequest
from tickets.chat import ChatWaiting, ChatWorkItem, WaitListener

__all__ = ["AcdChatRouting", "NoChatQueue"]

log = logging.getLogger(__name__)


class NoChatQueue(AcdError):
    """The ACD configuration has no queue on the chat channel."""

    error_id = "acd-no-chat-queue"


class AcdChatRouting:
    """`tickets.chat.ChatRouting` on the ACD (see the module docstring)."""

    def __init__(
        self,
        acd: AcdService,
        *,
        default_queue: str | None = None,
        present: Callable[[str], bool] | None = None,
        owners: ChatOwners | None = None,
    ) -> None:
        self.acd = acd
        self.present = present
        self.owners = owners
        self.queues = tuple(
            queue_id
            for queue_id, queue in acd.config.queues.items()
            if queue.channel is Channel.CHAT
        )
        if not self.queues:
            raise NoChatQueue("the ACD configuration has no queue with channel: chat")
        if default_queue is not None and default_queue not in self.queues:
            raise NoChatQueue(f"{default_queue!r} is not a chat queue of the ACD")
        self.default_queue = default_queue or self.queues[0]

    @staticmethod
    def item_id(item: ChatWorkItem) -> str:
        """The ACD item of a chat."""
        return f"{ITEM_PREFIX}{item.chat_id}"

    def queue_for(self, item: ChatWorkItem) -> str:
        """The chat queue the chat waits in."""
        return item.queue if item.queue in self.queues else self.default_queue

    async def offer(self, item: ChatWorkItem, on_wait: WaitListener | None = None) -> str | None:
        """Queue the chat and wait for an agent; the agent's id, or None (see the docstring)."""
        acd = self.acd
        item_id = self.item_id(item)
        request = WorkRequest(
            item_id,
            self.queue_for(item),
            needs={skill: 1 for skill in item.skills},
            language=item.language or None,
        )
        if self.owners is not None:
            await self.owners.claim(item_id)
        try:
            handle = await acd.enqueue(request)
        except ItemEnded:
            return None  # this chat was queued and finished before
        told: ChatWaiting | None = None
        while True:
            try:
                reserved = await handle.reserved(timeout=acd.poll_interval)
            except ItemEnded as err:
                log.info("chat %d left its queue: %s", item.chat_id, err)
                return None
            if reserved is not None:
                if self.present is not None and not self.present(reserved.agent_id):
                    log.info(
                        "chat %d: agent %s has no console open", item.chat_id, reserved.agent_id
                    )
                    await acd.no_answer(item_id)
                    continue
                if await acd.answered(item_id):
                    log.info("chat %d taken by agent %s", item.chat_id, reserved.agent_id)
                    return reserved.agent_id
                # The reservation was lost meanwhile (expired, agent logged out): the item is
                # back in its queue; wait for the stream to say so rather than spin.
                await asyncio.sleep(acd.poll_interval)
                continue
            status = acd.wait_status(item_id)
            if status is None:
                continue  # not yet in a snapshot, or reserved meanwhile
            if status.staffed == 0:
                log.info("chat %d: nobody staffed for %s", item.chat_id, handle.queue)
                await acd.cancel(item_id, LeaveReason.EMPTY.value)
                return None
            where = ChatWaiting(status.position, status.seconds)
            if on_wait is not None and where != told:
                told = where
                await on_wait(where)

    async def ended(self, item: ChatWorkItem) -> None:
        """The chat is over: cancel its item if it still waits, else complete it."""
        item_id = self.item_id(item)
        await end_item(self.acd, item_id, LeaveReason.ABANDONED)
        if self.owners is not None:
            await self.owners.release(item_id)
