"""The IVR's queue port over the ACD service, and the FastAGI route of agent-first callbacks.

:class:`AcdQueue` implements :class:`ivr.ports.QueuePort`: a caller's ``queue`` step becomes an
ACD work item (the step's skills at level 1 or better, its priority and language); the
:class:`QueuedCall` it returns maps the caller's wait onto the service's API (``answered``,
``no_answer``, ``hung_up``, ``cancel``, ``request_callback``).

:class:`CallbackRoute` serves ``agi://<node>/acd/callback?item=<id>``: the AGI the agent's leg
of an agent-first callback runs once the agent answered (:mod:`acd.adapters.ami_callback`
originates it). It reads the number from the item (never from the URL), marks the item answered,
dials the customer through the trunk pattern, and completes the item when the call ends,
whatever the customer did.
"""

from __future__ import annotations

import logging
import uuid

from acd.config import AcdConfigError
from acd.domain.call_events import EndedBy
from acd.service import AcdService, ItemEnded, WorkHandle, WorkRequest
from callcenter.logmask import mask_number
from ivr.adapters.fastagi_server import AgiChannelHungUp, AgiConnectionLost, AgiSession
from ivr.domain.call import CallId
from ivr.errors import IvrError
from ivr.ports import AgentToDial, QueueJoin, QueuePosition, WaitSettings
from ivr.protocol import agi_commands as agi

__all__ = ["AcdCallbacks", "AcdQueue", "AcdQueuedCall", "CallbackRoute", "UnknownQueueError"]

_log = logging.getLogger(__name__)


class UnknownQueueError(IvrError):
    """The flow names a queue the ACD does not have."""

    error_id = "ivr-unknown-queue"


class AcdQueuedCall:
    """One caller's work item; see :class:`ivr.ports.QueuedCall`."""

    def __init__(self, service: AcdService, handle: WorkHandle, settings: WaitSettings) -> None:
        self._service = service
        self._handle = handle
        self._settings = settings
        self.item_id = handle.item_id
        self._finished = False

    @property
    def settings(self) -> WaitSettings:
        return self._settings

    @property
    def resumed(self) -> bool:
        """True if the caller got an earlier place back (called again within the window)."""
        return self._handle.resumed

    def position(self) -> QueuePosition | None:
        estimate = self._service.wait_status(self.item_id)
        if estimate is None:
            return None
        return QueuePosition(estimate.position, estimate.seconds)

    async def next_agent(self, timeout_s: float) -> AgentToDial | None:
        try:
            reserved = await self._handle.reserved(timeout_s)
        except ItemEnded as err:
            raise IvrError(str(err)) from err
        if reserved is None:
            return None
        return AgentToDial(reserved.agent_id, reserved.endpoint, reserved.ring_timeout)

    async def answered(self) -> None:
        await self._service.answered(self.item_id)

    async def not_answered(self, *, busy: bool) -> None:
        await self._service.no_answer(self.item_id, busy=busy)

    async def finished(self) -> None:
        self._finished = True
        await self._service.hung_up(self.item_id)

    async def abandon(self) -> None:
        if not self._finished:
            await self._service.cancel(self.item_id)

    async def leave_callback(self, number: str, key: str) -> None:
        self._finished = True
        await self._service.request_callback(self.item_id, number, key)


class AcdQueue:
    """:class:`ivr.ports.QueuePort` over one :class:`AcdService`."""

    def __init__(self, service: AcdService) -> None:
        self.service = service

    async def join(self, request: QueueJoin) -> AcdQueuedCall:
        config = self.service.config
        try:
            queue = config.queue(request.queue)
        except AcdConfigError as err:
            raise UnknownQueueError(str(err)) from err
        item_id = f"call-{request.call_id}-{uuid.uuid4().hex[:8]}"
        handle = await self.service.enqueue(
            WorkRequest(
                item_id,
                request.queue,
                priority=request.priority,
                needs={skill: 1 for skill in request.skills},
                language=request.language or None,
                customer=request.caller,
                unique_id=request.unique_id,
            )
        )
        settings = WaitSettings(
            announce_every_s=queue.announce_every,
            moh_class=queue.moh_class,
            callback_key=queue.callback_key,
            ring_timeout_s=config.service.ring_timeout,
        )
        _log.info(
            "caller %s queued in %s as %s%s",
            mask_number(request.caller),
            request.queue,
            item_id,
            " (old place resumed)" if handle.resumed else "",
        )
        return AcdQueuedCall(self.service, handle, settings)


class AcdCallbacks:
    """:class:`ivr.ports.CallbackPort` over the ACD: a flow's ``callback`` step (outside a queue)
    queues an agent-first callback item in ``queue``; the agent is rung first, then the customer.
    """

    def __init__(self, service: AcdService, queue: str) -> None:
        service.config.queue(queue)  # AcdConfigError now, not at the first caller
        self.service = service
        self.queue = queue

    async def request_callback(self, call_id: CallId, number: str, language: str) -> None:
        await self.service.enqueue(
            WorkRequest(
                f"callback-{call_id}-{uuid.uuid4().hex[:8]}",
                self.queue,
                language=language or None,
                customer=number,
                callback=number,
            )
        )
        _log.info("callback to %s queued in %s", mask_number(number), self.queue)


class CallbackRoute:
    """The FastAGI handler for ``acd/callback?item=<id>`` (the agent leg of a callback)."""

    def __init__(
        self,
        service: AcdService,
        *,
        trunk_pattern: str = "PJSIP/{number}@trunk",
        dial_timeout_s: int = 45,
        call_max_s: float = 4 * 3600.0,
    ) -> None:
        self.service = service
        self.trunk_pattern = trunk_pattern
        self.dial_timeout_s = dial_timeout_s
        self.call_max_s = call_max_s

    async def __call__(self, session: AgiSession) -> None:
        item_id = session.params.get("item", "")
        record = await self.service.state.item(item_id) if item_id else None
        number = str(record.attrs.get("callback", "")) if record is not None else ""
        if not number.lstrip("+").isdigit():
            _log.warning("callback AGI without a valid item and number; hanging up")
            await session.send(agi.Hangup())
            return
        await self.service.answered(item_id)
        ended_by = EndedBy.CALLER.value
        try:
            target = self.trunk_pattern.format(number=number)
            dial = agi.Exec("Dial", f"{target},{self.dial_timeout_s}")
            await session.send(dial, timeout=self.call_max_s)
            status = await session.send(agi.GetVariable("DIALSTATUS"))
            _log.info("callback %s to %s: %s", item_id, mask_number(number), status.data)
        except (AgiChannelHungUp, AgiConnectionLost):
            ended_by = EndedBy.AGENT.value
        finally:
            await self.service.hung_up(item_id, ended_by)
