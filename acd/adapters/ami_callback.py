"""Agent-first callbacks over AMI: ``Originate`` the reserved agent into our callback FastAGI route.

The agent's endpoint is rung first (``Channel`` = the endpoint, ``Timeout`` = the ring timeout);
when the agent answers, Asterisk runs ``AGI(agi://<node>/acd/callback?item=<id>)`` on the agent's
leg (``ivr.adapters.acd_queue.CallbackRoute``), which dials the customer. The originate's
``OriginateResponse`` is Success once the agent answered and Failure when the agent did not
(no answer, busy, unavailable): the service then requeues the callback and marks the agent
missed. The customer's number never appears in the AMI action or the URL.
"""

from __future__ import annotations

import logging
from typing import Protocol

from acd.domain.pbx_events import OriginateResponse
from acd.service import CallbackJob

__all__ = ["AmiCallbackDialer", "Originator"]

_log = logging.getLogger(__name__)


class Originator(Protocol):
    """What the dialer needs of the AMI link (``acd.adapters.ami_link.AmiLink``)."""

    async def originate(
        self, channel: str, fields: list[tuple[str, str]], *, timeout: float | None = None
    ) -> OriginateResponse: ...


class AmiCallbackDialer:
    """:class:`acd.service.CallbackDialer` on an AMI link; ``agi_base`` is ``agi://host:port``."""

    def __init__(self, link: Originator, agi_base: str, *, caller_id: str = "Callback") -> None:
        self.link = link
        self.agi_base = agi_base.rstrip("/")
        self.caller_id = caller_id

    async def call_back(self, job: CallbackJob) -> bool:
        fields = [
            ("Application", "AGI"),
            ("Data", f"{self.agi_base}/acd/callback?item={job.item_id}"),
            ("Timeout", str(round(job.ring_timeout * 1000))),
            ("CallerID", f'"{self.caller_id}" <{job.item_id}>'),
        ]
        response = await self.link.originate(job.endpoint, fields)
        _log.info(
            "callback %s: agent %s %s",
            job.item_id,
            job.agent_id,
            "answered" if response.response == "Success" else "did not answer",
        )
        return response.response == "Success"
