"""The PBX service: owns one Asterisk's AMI link while this node holds its lease, and keeps the
live channel picture from the link's events (a snapshot on every reconnect plus the event tail).

``listeners`` are called with every item after it is applied (e.g.
``acd.adapters.ami_answers.DialAnswers.observe``); they must only enqueue.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

from acd.adapters.ami_link import AmiLink, LinkItem, LinkStateChanged, Resynced
from acd.adapters.redis_lease import AsteriskLease
from acd.domain.channels import ChannelTable
from acd.domain.pbx_events import FullyBooted, Shutdown, UnknownEvent

log = logging.getLogger(__name__)

LinkFactory = Callable[[], AmiLink]


class PbxMonitor:
    """Consumes one AMI link's queue into a `ChannelTable`; counts what it saw."""

    def __init__(self) -> None:
        self.channels = ChannelTable()
        self.events_by_name: Counter[str] = Counter()
        self.connected = False
        self.resyncs = 0
        self.link: AmiLink | None = None
        self.lease_token: int | None = None
        self.listeners: list[Callable[[LinkItem], None]] = []

    def apply(self, item: LinkItem) -> None:
        """Apply one item from the link's queue to the live picture."""
        if isinstance(item, LinkStateChanged):
            self.connected = item.connected
            if item.connected:
                log.info("AMI connected")
            else:
                log.warning(
                    "AMI session ended: %s (retry in %.1f s)", item.reason, item.retry_in or 0
                )
            return
        if isinstance(item, Resynced):
            self.channels.reset(item.channels)
            self.resyncs += 1
            log.info("AMI resync: %d live channels", len(item.channels))
            return
        name = item.name if isinstance(item, UnknownEvent) else type(item).__name__
        self.events_by_name[name] += 1
        if isinstance(item, FullyBooted | Shutdown):
            log.info("Asterisk %s", name)
        self.channels.apply(item)
        for listener in self.listeners:
            listener(item)

    async def consume(self, link: AmiLink) -> None:
        """Run the link and apply its items until cancelled."""
        self.link = link
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(link.run())
                while True:
                    self.apply(await link.events.get())
        finally:
            self.link = None
            self.connected = False

    async def own(self, lease: AsteriskLease, make_link: LinkFactory) -> None:
        """Hold the Asterisk's lease; while held, run a fresh link. Never two owners at once."""

        async def owner(token: int) -> None:
            self.lease_token = token
            log.info("this node owns Asterisk %s (fencing token %d)", lease.asterisk_id, token)
            try:
                await self.consume(make_link())
            finally:
                self.lease_token = None

        await lease.run(owner)
