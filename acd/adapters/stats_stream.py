"""Feeds the ACD events stream to queue statistics and the queue_log with a consumer cursor."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from acd.adapters.redis_state import AcdEvent, AcdRedisState
from acd.domain.stats import QueueStatistics, StatsConfig
from acd.queue_log import QueueLogTranslator, QueueLogWriter

__all__ = ["StatsStreamReader"]

log = logging.getLogger(__name__)

Consumer = Callable[[AcdEvent], object]


class StatsStreamReader:
    """Reads the stream of one site after a cursor and hands each entry to the consumers.

    The statistics live in memory: after a restart :meth:`rebuild` starts over from the oldest
    entry still in the stream (entries trimmed from it are gone: size ``stream_maxlen`` for the
    history the statistics must cover).
    """

    def __init__(
        self,
        state: AcdRedisState,
        config: StatsConfig | None = None,
        *,
        queue_log: Path | None = None,
        batch: int = 1000,
    ) -> None:
        self._state = state
        self._config = config or StatsConfig()
        self._batch = batch
        self._queue_log = QueueLogWriter(queue_log) if queue_log is not None else None
        self._translator = QueueLogTranslator()
        self.cursor = "0-0"
        self.stats = QueueStatistics(self._config)
        self._consumers: Sequence[Consumer] = (self.stats.apply,)

    async def rebuild(self) -> int:
        """Forget everything and fold the whole stream again; how many entries."""
        self.stats = QueueStatistics(self._config)
        self._consumers = (self.stats.apply,)
        self.cursor = "0-0"
        return await self.catch_up(write_queue_log=False)

    async def catch_up(self, *, write_queue_log: bool = True) -> int:
        """Fold every entry after the cursor; how many. The queue_log gets only new lines."""
        total = 0
        while chunk := await self._state.events(self.cursor, self._batch):
            for entry in chunk:
                for consume in self._consumers:
                    consume(entry)
                lines = self._translator.lines(entry)
                if write_queue_log and self._queue_log is not None and lines:
                    self._queue_log.write(lines)
            self.cursor = chunk[-1].event_id
            total += len(chunk)
        return total

    async def run(self, poll: float = 0.5) -> None:
        """Follow the stream until cancelled."""
        try:
            while True:
                if not await self.catch_up():
                    await asyncio.sleep(poll)
        finally:
            self.close()

    def close(self) -> None:
        """Close the queue_log file."""
        if self._queue_log is not None:
            self._queue_log.close()
