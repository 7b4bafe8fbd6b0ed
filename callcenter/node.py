"""One controller node: the FastAGI server running the IVR flows, the AudioSocket server for
speech, the ACD service (with chats and email tickets routed through it when it has queues for
them), the feed of finished calls into the help desk and, while this node holds
the Asterisk's lease, the AMI link and the live channel picture, all under one TaskGroup.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis
from aiohttp import web

from acd.adapters.ami_answers import DialAnswers
from acd.adapters.ami_link import AmiLink
from acd.adapters.chat_routing import AcdChatRouting
from acd.adapters.redis_lease import AsteriskLease
from acd.pbx_monitor import PbxMonitor
from acd.service import AcdService
from agent_console.access_log import MaskedAccessLogger
from agent_console.app import create_app, web_config
from agent_console.chat import HUB
from callcenter.config import Settings
from callcenter.process import run_until_stopped
from callcenter.services import (
    StartupError,
    acd_routes,
    build_acd,
    build_call_feed,
    build_chat_routing,
    build_chat_sweeper,
    build_email_dispatcher,
    build_helpdesk_hooks,
    build_ivr,
    open_records,
)
from ivr.adapters.audiosocket_server import AudioSocketServer
from ivr.adapters.fastagi_server import AgiHandler, FastAgiServer
from ivr.domain.flow_check import FlowInvalidError
from ivr.selftest import SELFTEST_SCRIPT, selftest
from ivr.service import IvrService
from tickets.chat import ChatRouting
from tickets.db import Database
from tickets.email import EmailConfigError
from tickets.email.outbound import OutboundMail, build_outbound_mail
from tickets.email.service import BreachWatcher, build_email_channel, build_imap_poller
from tickets.email.smtp_in import InboundSmtpServer
from tickets.errors import MigrationFailed
from tickets.hooks import HelpDeskHooks

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NodeAddresses:
    """Where the node listens, once it does (ports resolved when configured as 0)."""

    agi_host: str
    agi_port: int
    audiosocket_host: str
    audiosocket_port: int
    web_host: str = ""
    web_port: int = 0
    smtp_port: int = 0  # 0: the email channel is off


def default_routes() -> dict[str, AgiHandler]:
    """The FastAGI routes every node serves besides the IVR flows."""
    return {SELFTEST_SCRIPT: selftest}


async def serve_node(
    settings: Settings,
    redis_url: str,
    *,
    monitor: PbxMonitor | None = None,
    routes: Mapping[str, AgiHandler] | None = None,
    on_listening: Callable[[NodeAddresses], None] | None = None,
    migrate: bool = False,
    on_acd: Callable[[AcdService], Awaitable[None]] | None = None,
) -> None:
    """Run a node until cancelled.

    ``routes`` replaces the node's FastAGI routes (tests); by default they are the selftest
    route, one route per IVR flow and, with an ACD, the callback route. ``migrate`` upgrades the
    records database first (the demo); otherwise a database at an older schema revision stops
    the start. ``on_acd`` runs once the ACD service has started (the demo logs agents in there).
    """
    monitor = monitor or PbxMonitor()
    redis = aioredis.Redis.from_url(
        redis_url,
        socket_timeout=settings.redis.timeout,
        socket_connect_timeout=settings.redis.timeout,
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

    records = await open_records(settings, migrate=migrate)
    acd = build_acd(settings, redis, monitor)
    ivr: IvrService | None = None
    agi: FastAgiServer | None = None
    web_runner: web.AppRunner | None = None
    smtp: InboundSmtpServer | None = None
    try:
        await audio.start()
        if routes is None:
            ivr = await build_ivr(settings, redis, audio, records, acd)
            routes = {**default_routes(), **ivr.routes()}
            if acd is not None:
                routes.update(acd_routes(settings, acd))
        agi = FastAgiServer(
            routes,
            host=settings.agi.host,
            port=settings.agi.port,
            header_timeout=settings.agi.header_timeout,
            command_timeout=settings.agi.command_timeout,
            max_header_bytes=settings.agi.max_header_bytes,
        )
        await agi.start()
        outbound = build_outbound_mail(records, settings.email)
        hooks = build_helpdesk_hooks(
            settings, records, outbound.customer_mail if outbound is not None else None
        )
        imap = build_imap_poller(settings.email, records, hooks)  # None without imap_host
        if settings.email.enabled:
            smtp = build_email_channel(records, settings.email, hooks)
            await smtp.start()
            log.info("email: SMTP in on %s:%d", settings.email.host, smtp.port)
        chat_routing = build_chat_routing(acd, redis, settings.node_id)
        web_runner = await start_web(
            settings, records, chat_routing=chat_routing, outbound=outbound, acd=acd, hooks=hooks
        )
        web_port = _bound_port(web_runner)
        log.info(
            "web app on http://%s:%d/ (agent console, REST API, chat)", settings.web.host, web_port
        )
        if on_listening is not None:
            on_listening(
                NodeAddresses(
                    settings.agi.host,
                    agi.port,
                    settings.audiosocket.host,
                    audio.port,
                    settings.web.host,
                    web_port,
                    smtp.port if smtp is not None else 0,
                )
            )
        async with asyncio.TaskGroup() as tg:
            tg.create_task(monitor.own(lease, make_link))
            tg.create_task(build_call_feed(settings, redis, records, hooks).run())
            tg.create_task(
                BreachWatcher.for_hooks(hooks, interval=settings.email.breach_check_interval).run()
            )
            if outbound is not None:  # agents' replies and acknowledgements to customers
                tg.create_task(outbound.sender.run())
            if imap is not None:  # a mailbox polled into the same desk as SMTP
                tg.create_task(imap.run())
            if acd is not None:
                answers = DialAnswers(acd)  # agents' answers from AMI DialEnd, not ring timeouts
                monitor.listeners.append(answers.observe)
                tg.create_task(answers.run())
                tg.create_task(acd.run())
                dispatcher = build_email_dispatcher(acd, redis, records)
                if dispatcher is not None:  # email tickets offered to agents by the ACD
                    tg.create_task(dispatcher.run())
                sweeper = build_chat_sweeper(chat_routing, redis, records)
                if sweeper is not None:  # chats left in the ACD by nodes that died
                    tg.create_task(sweeper.run())
                if on_acd is not None:
                    tg.create_task(_when_started(acd, on_acd))
    finally:
        if smtp is not None:
            await smtp.close()
        if web_runner is not None:
            await web_runner.cleanup()
        if agi is not None:
            await agi.close()
        await audio.close()
        if ivr is not None:
            await ivr.close()
        await records.close()
        await redis.aclose()


async def start_web(
    settings: Settings,
    records: Database,
    *,
    chat_routing: ChatRouting | None = None,
    outbound: OutboundMail | None = None,
    acd: AcdService | None = None,
    hooks: HelpDeskHooks | None = None,
) -> web.AppRunner:
    """The aiohttp web app (agent console, REST API, chat widget) on ``[web]`` host:port;
    chats go to ``chat_routing`` (the ACD) when given; with ``outbound``, agents' public replies
    and offline-chat acknowledgements are mailed to customers; with ``acd``, agents set their own
    ACD state (``/api/agent/state``); ``hooks`` are the node's help-desk hooks (SLA, surveys)."""
    app = create_app(
        web_config(settings.web),
        database=records,
        chat_routing=chat_routing,
        offline_mailer=outbound.offline_mailer if outbound is not None else None,
        customer_mail=outbound.customer_mail if outbound is not None else None,
        acd=acd,
        hooks=hooks,
    )
    if isinstance(chat_routing, AcdChatRouting):  # chats only to agents at a console here
        chat_routing.present = app[HUB].connected
    runner = web.AppRunner(app, access_log_class=MaskedAccessLogger)  # no tokens, no queries
    await runner.setup()
    await web.TCPSite(runner, settings.web.host, settings.web.port).start()
    return runner


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return 0


async def _when_started(acd: AcdService, then: Callable[[AcdService], Awaitable[None]]) -> None:
    await acd.started.wait()
    await then(acd)


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
    try:
        await run_until_stopped(serve_node(settings, settings.redis.url.value))
    except (StartupError, FlowInvalidError, MigrationFailed, EmailConfigError) as err:
        log.error("node %s cannot start: %s", settings.node_id, err)
        return 2
    log.info("node %s stopped", settings.node_id)
    return 0
