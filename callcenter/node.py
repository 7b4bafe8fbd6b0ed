"""One controller node: the FastAGI and AudioSocket servers plus, while this node holds the
Asterisk's lease, the AMI link and the live channel picture, all under one TaskGroup.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis

from acd.adapters.ami_link import AmiLink
from acd.adapters.redis_lease import AsteriskLease
from acd.pbx_monitor import PbxMonitor
from callcenter.config import Settings
from callcenter.process import run_until_stopped
from ivr.adapters.audiosocket_server import AudioSocketServer
from ivr.adapters.fastagi_server import AgiHandler, FastAgiServer
from ivr.selftest import SELFTEST_SCRIPT, selftest

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NodeAddresses:
    """Where the node listens, once it does (ports resolved when configured as 0)."""

    agi_host: str
    agi_port: int
    audiosocket_host: str
    audiosocket_port: int


def default_routes() -> dict[str, AgiHandler]:
    """The FastAGI routes every node serves."""
    return {SELFTEST_SCRIPT: selftest}


async def serve_node(
    settings: Settings,
    redis_url: str,
    *,
    monitor: PbxMonitor | None = None,
    routes: Mapping[str, AgiHandler] | None = None,
    on_listening: Callable[[NodeAddresses], None] | None = None,
) -> None:
    """Run a node until cancelled."""
    monitor = monitor or PbxMonitor()
    redis = aioredis.Redis.from_url(
        redis_url,
        socket_timeout=settings.redis.timeout,
        socket_connect_timeout=settings.redis.timeout,
    )
    agi = FastAgiServer(
        routes if routes is not None else default_routes(),
        host=settings.agi.host,
        port=settings.agi.port,
        header_timeout=settings.agi.header_timeout,
        command_timeout=settings.agi.command_timeout,
        max_header_bytes=settings.agi.max_header_bytes,
    )
    audio = AudioSocketServer(
        None,
        host=settings.audiosocket.host,
        port=settings.audiosocket.port,
        first_frame_timeout=settings.audiosocket.first_frame_timeout,
    )
    lease = AsteriskLease(
        redis, settings.node.asterisk_id, settings.node_id, ttl=settings.node.lease_ttl
    )

    def make_link() -> AmiLink:
        ami = settings.ami
        return AmiLink(
            ami.host,
            ami.port,
            ami.username,
            ami.secret.value,
            events_queue_size=ami.events_queue_size,
            action_timeout=ami.action_timeout,
            heartbeat_interval=ami.heartbeat_interval,
            backoff_max=ami.backoff_max,
            connect_timeout=ami.connect_timeout,
        )

    try:
        await agi.start()
        await audio.start()
        if on_listening is not None:
            on_listening(
                NodeAddresses(settings.agi.host, agi.port, settings.audiosocket.host, audio.port)
            )
        await monitor.own(lease, make_link)
    finally:
        await agi.close()
        await audio.close()
        await redis.aclose()


async def run_production(settings: Settings) -> int:
    """`callcenter run`: a node against the configured Asterisk, Redis and database."""
    if not settings.redis.url:
        log.error("redis.url is required for `callcenter run` (set CALLCENTER_REDIS_URL)")
        return 2
    if not settings.ami.secret:
        log.error("ami.secret is required for `callcenter run` (set CALLCENTER_AMI_SECRET)")
        return 2
    log.info(
        "node %s starting: AMI %s:%d (Asterisk %s)",
        settings.node_id,
        settings.ami.host,
        settings.ami.port,
        settings.node.asterisk_id,
    )
    await run_until_stopped(serve_node(settings, settings.redis.url.value))
    log.info("node %s stopped", settings.node_id)
    return 0
