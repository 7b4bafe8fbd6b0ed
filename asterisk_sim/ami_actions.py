"""AMI action handlers of the simulator (manager.c / manager_channels.c behaviour).

Every ``Message:`` text is copied from ``ami-errors.ami.jsonl`` and ``ami-actions.ami.jsonl``.
Responses carry ``ActionID`` as their second line when the action had one. List actions answer
``EventList: start`` then one event per item then ``<X>Complete`` with ``EventList: Complete``
and ``ListItems`` (README section 4.1, "List actions").
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from acd.protocol.ami import AmiMessage
from asterisk_sim import event_templates as ev
from asterisk_sim.channels import Channel
from asterisk_sim.originate import OriginateRequest, originate, parse_caller_id
from asterisk_sim.recording import mute_mixmonitor, start_mixmonitor, stop_mixmonitor

if TYPE_CHECKING:
    from asterisk_sim.ami_server import AmiSession
    from asterisk_sim.pbx import Pbx

Headers = list[tuple[str, str]]

VERSION_LINE = (
    "Asterisk 22.10.1 built by root @ vm on a x86_64 running Linux on 2026-11-22 06:36:09 UTC"
)


@dataclass(frozen=True, slots=True)
class ActionContext:
    """One action being handled on one session."""

    session: AmiSession
    message: AmiMessage

    @property
    def pbx(self) -> Pbx:
        return self.session.server.pbx

    def field(self, name: str) -> str:
        """A header's value ("" when absent)."""
        return self.message.get(name) or ""

    def respond(self, response: str, *fields: tuple[str, str]) -> Headers:
        headers: Headers = [("Response", response)]
        action_id = self.message.action_id
        if action_id is not None:
            headers.append(("ActionID", action_id))
        headers.extend(fields)
        return headers

    def success(self, message: str | None = None, *fields: tuple[str, str]) -> None:
        extra = ([("Message", message)] if message is not None else []) + list(fields)
        self.session.send(self.respond("Success", *extra))

    def error(self, message: str) -> None:
        self.session.send(self.respond("Error", ("Message", message)))

    def send_list(self, message: str, items: list[Headers], complete: Headers) -> None:
        start = self.respond("Success", ("EventList", "start"), ("Message", message))
        self.session.send(start, *items, complete)


Handler = Callable[[ActionContext], Awaitable[None]]


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on", "y", "t")


async def dispatch(ctx: ActionContext) -> None:
    """Route one message to its handler, applying the login and format checks first."""
    action = ctx.message.action
    session = ctx.session
    if action is not None and action.lower() == "login":
        await _login(ctx)
        return
    if not session.authenticated:
        ctx.error("Permission denied")
        return
    if not action:
        ctx.error("Missing action in request")
        return
    handler = HANDLERS.get(action.lower())
    if handler is None:
        ctx.error(
            f"Invalid/unknown command: {action}. Use Action: ListCommands to show available "
            "commands."
        )
        ctx.pbx.emit(
            session.security_event(
                "RequestBadFormat",
                "Error",
                ("SessionID", session.session_id),
                ("LocalAddress", session.local_address),
                ("RemoteAddress", session.remote_address),
                ("RequestType", f"Action: {action}"),
                ("SessionTV", session.session_tv),
                ("AccountID", session.username),
            )
        )
        return
    await handler(ctx)


async def _login(ctx: ActionContext) -> None:
    session = ctx.session
    if session.authenticated:
        ctx.success("Already authenticated")
        return
    user, secret = ctx.field("Username"), ctx.field("Secret")
    expected = session.server.users.get(user)
    if expected is None or expected != secret:
        await asyncio.sleep(session.server.auth_fail_delay)
        ctx.error("Authentication failed")
        session.close_soon()
        return
    session.authenticated = True
    session.username = user
    events = ctx.message.get("Events")
    session.events_on = events is None or events.strip().lower() != "off"
    response = ctx.respond("Success", ("Message", "Authentication accepted"))
    if session.events_on:
        session.send(response, ev.fully_booted())
    else:
        session.send(response)
    ctx.pbx.emit(
        session.security_event(
            "SuccessfulAuth",
            "Informational",
            ("AccountID", user),
            ("SessionID", session.session_id),
            ("LocalAddress", session.local_address),
            ("RemoteAddress", session.remote_address),
            ("UsingPassword", "0"),
            ("SessionTV", session.session_tv),
        )
    )


async def _logoff(ctx: ActionContext) -> None:
    ctx.session.send(ctx.respond("Goodbye", ("Message", "Thanks for all the fish.")))
    ctx.session.close_soon()


async def _ping(ctx: ActionContext) -> None:
    ctx.session.send(ctx.respond("Success", ("Ping", "Pong"), ("Timestamp", f"{time.time():.6f}")))


async def _events(ctx: ActionContext) -> None:
    mask = ctx.field("EventMask").strip().lower()
    ctx.session.events_on = mask not in ("off", "")
    ctx.session.send(ctx.respond("Success", ("Events", "On" if ctx.session.events_on else "Off")))


async def _core_status(ctx: ActionContext) -> None:
    started = datetime.fromtimestamp(ctx.session.server.started_epoch)
    ctx.session.send(
        ctx.respond(
            "Success",
            ("CoreStartupDate", started.strftime("%Y-%m-%d")),
            ("CoreStartupTime", started.strftime("%H:%M:%S")),
            ("CoreReloadDate", started.strftime("%Y-%m-%d")),
            ("CoreReloadTime", started.strftime("%H:%M:%S")),
            ("CoreCurrentCalls", str(len({c.linkedid for c in ctx.pbx.channels.all()}))),
            ("CoreProcessedCalls", str(ctx.pbx.channels.processed_calls)),
        )
    )


def _find(ctx: ActionContext, name: str) -> Channel | None:
    ch: Channel | None = ctx.pbx.channels.get(name)
    return ch


async def _originate(ctx: ActionContext) -> None:
    channel = ctx.field("Channel")
    if not channel:
        ctx.error("Channel not specified")
        return
    app = ctx.message.get("Application")
    exten, context, priority_text = ctx.field("Exten"), ctx.field("Context"), ctx.field("Priority")
    if not app and (not exten or not context or not priority_text):
        ctx.error("Originate with 'Exten' requires 'Context' and 'Priority'")
        return
    priority = 1
    if not app:
        if priority_text.isdigit():
            priority = int(priority_text)
        else:
            label = ctx.pbx.dialplan.label(context, exten, priority_text)
            if label is None:
                ctx.error("Invalid priority")
                return
            priority = label
    timeout_text = ctx.field("Timeout")
    timeout = int(timeout_text) / 1000 if timeout_text.isdigit() else 30.0
    variables: list[tuple[str, str]] = []
    for item in ctx.message.get_all("Variable"):
        for part in item.split(","):
            key, sep, value = part.partition("=")
            if sep:
                variables.append((key.strip(), value))
    caller = ctx.message.get("CallerID")
    request = OriginateRequest(
        channel=channel,
        application=app or None,
        data=ctx.field("Data"),
        context=None if app else context,
        exten=None if app else exten,
        priority=priority,
        caller_id=parse_caller_id(caller) if caller else None,
        variables=tuple(variables),
        channel_id=ctx.message.get("ChannelId") or None,
        other_channel_id=ctx.message.get("OtherChannelId") or None,
        timeout=timeout,
        action_id=ctx.message.action_id,
    )
    if _truthy(ctx.field("Async")):
        ctx.success("Originate successfully queued")
        ctx.pbx.spawn(_originate_quietly(ctx, request), f"originate {channel}")
        return
    outcome = await originate(ctx.pbx, request)
    if outcome.success:
        ctx.success("Originate successfully queued")
    else:
        ctx.error("Originate failed")


async def _originate_quietly(ctx: ActionContext, request: OriginateRequest) -> None:
    await originate(ctx.pbx, request)


async def _redirect(ctx: ActionContext) -> None:
    name = ctx.field("Channel")
    if not name:
        ctx.error("Channel not specified")
        return
    ch = _find(ctx, name)
    if ch is None:
        ctx.error(f"Channel does not exist: {name}")
        return
    context = ctx.field("Context") or ch.context
    exten = ctx.field("Exten") or ch.exten
    priority_text = ctx.field("Priority") or "1"
    priority = (
        int(priority_text)
        if priority_text.isdigit()
        else ctx.pbx.dialplan.label(context, exten, priority_text)
    )
    if priority is None or not ctx.pbx.dialplan.has_extension(context, exten, priority):
        ctx.error("Redirect failed")
        return
    ctx.success("Redirect successful")
    ch.redirect_to = (context, exten, priority)
    ch.redirect_event.set()


async def _hangup(ctx: ActionContext) -> None:
    name = ctx.field("Channel")
    if not name:
        ctx.error("No channel specified")
        return
    cause_text = ctx.field("Cause")
    cause = int(cause_text) if cause_text.isdigit() else None
    if len(name) > 2 and name.startswith("/") and name.endswith("/"):
        try:
            regex = re.compile(name[1:-1])
        except re.error:
            ctx.error("Invalid regex")
            return
        matched = [c for c in _ordered(ctx) if regex.search(c.name)]
        action_id = ctx.message.action_id
        items: list[Headers] = []
        for c in matched:
            item: Headers = [("Event", "ChannelHungup"), ("Channel", c.name)]
            if action_id is not None:
                item.append(("ActionID", action_id))
            items.append(item)
        ctx.send_list(
            "Channels hung up will follow",
            items,
            ev.list_complete("ChannelsHungupListComplete", action_id, len(items)),
        )
        for c in matched:
            ctx.pbx.soft_hangup(c, event_cause=cause, cause=cause)
        return
    ch = _find(ctx, name)
    if ch is None:
        ctx.error("No such channel")
        return
    ctx.success("Channel Hungup")
    ctx.pbx.soft_hangup(ch, event_cause=cause, cause=cause)


def _ordered(ctx: ActionContext) -> list[Channel]:
    return sorted(ctx.pbx.channels.all(), key=lambda c: c.name)


async def _setvar(ctx: ActionContext) -> None:
    variable = ctx.field("Variable")
    if not variable:
        ctx.error("No variable specified")
        return
    name = ctx.message.get("Channel")
    value = ctx.field("Value")
    if name:
        ch = _find(ctx, name)
        if ch is None:
            ctx.error("No such channel")
            return
        ctx.success("Variable Set")
        upper = variable.upper()
        if upper in ("CALLERID(NUM)", "CALLERID(NAME)"):
            if upper.endswith("(NUM)"):
                ch.caller_num = value
            else:
                ch.caller_name = value
            ctx.pbx.emit(ev.newcallerid(ch))
        else:
            ctx.pbx.set_var(ch, variable, value)
        return
    ctx.success("Variable Set")
    ctx.pbx.set_var(None, variable, value)


async def _getvar(ctx: ActionContext) -> None:
    variable = ctx.field("Variable")
    if not variable:
        ctx.error("No variable specified")
        return
    name = ctx.message.get("Channel")
    ch: Channel | None = None
    if name:
        ch = _find(ctx, name)
        if ch is None:
            ctx.error("No such channel")
            return
    value = ctx.pbx.read_variable(ch, variable) or ""
    ctx.session.send(ctx.respond("Success", ("Variable", variable), ("Value", value)))


async def _play_dtmf(ctx: ActionContext) -> None:
    name = ctx.field("Channel")
    ch = _find(ctx, name) if name else None
    if ch is None:
        ctx.error("Channel not found")
        return
    digit = ctx.field("Digit")
    if not digit:
        ctx.error("No digit specified")
        return
    duration_text = ctx.field("Duration")
    duration = int(duration_text) if duration_text.isdigit() else 100
    receive = _truthy(ctx.field("Receive"))
    await ctx.pbx.play_dtmf(ch, digit[0], duration, receive=receive)
    ctx.success("DTMF successfully queued")


def _duration(seconds: float) -> str:
    total = max(0, int(seconds))
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


async def _core_show_channels(ctx: ActionContext) -> None:
    now = ctx.pbx.clock.now()
    action_id = ctx.message.action_id
    items = [
        ev.core_show_channel(c, action_id, _duration(now - c.created_at)) for c in _ordered(ctx)
    ]
    ctx.send_list(
        "Channels will follow",
        items,
        ev.list_complete("CoreShowChannelsComplete", action_id, len(items)),
    )


async def _status(ctx: ActionContext) -> None:
    name = ctx.message.get("Channel")
    if name:
        ch = _find(ctx, name)
        if ch is None:
            ctx.error("No such channel")
            return
        channels = [ch]
    else:
        channels = _ordered(ctx)
    now = ctx.pbx.clock.now()
    action_id = ctx.message.action_id
    items = [ev.status_item(c, action_id, int(now - c.created_at)) for c in channels]
    count = str(len(items))
    ctx.send_list(
        "Channel status will follow",
        items,
        ev.list_complete("StatusComplete", action_id, len(items), ("Items", count)),
    )


async def _mixmonitor(ctx: ActionContext) -> None:
    name = ctx.field("Channel")
    ch = _find(ctx, name) if name else None
    if ch is None:
        ctx.error("No such channel")
        return
    ctx.success()
    start_mixmonitor(ctx.pbx, ch, ctx.field("File") or f"{ch.uniqueid}.wav", ctx.field("Options"))


async def _mixmonitor_mute(ctx: ActionContext) -> None:
    name = ctx.field("Channel")
    ch = _find(ctx, name) if name else None
    if ch is None:
        ctx.error("No such channel")
        return
    ctx.success()
    direction = ctx.field("Direction") or "both"
    mute_mixmonitor(ctx.pbx, ch, direction, _truthy(ctx.field("State")))


async def _stop_mixmonitor(ctx: ActionContext) -> None:
    name = ctx.field("Channel")
    ch = _find(ctx, name) if name else None
    if ch is None:
        ctx.error("No such channel")
        return
    ctx.success()
    stop_mixmonitor(ctx.pbx, ch)


def _concise(ctx: ActionContext) -> list[str]:
    now = ctx.pbx.clock.now()
    lines = []
    for c in _ordered(ctx):
        caller = "" if c.caller_num == "<unknown>" else c.caller_num
        secs = int(now - c.created_at)
        lines.append(
            "!".join(
                [
                    c.name,
                    c.context,
                    c.exten,
                    str(c.priority),
                    c.state_desc,
                    c.application,
                    c.app_data,
                    caller,
                    c.accountcode,
                    "",
                    "3",
                    str(secs),
                    c.bridge_id,
                    c.uniqueid,
                ]
            )
        )
    return lines


async def _command(ctx: ActionContext) -> None:
    command = " ".join(ctx.field("Command").split())
    if command == "core show version":
        lines = [VERSION_LINE]
    elif command == "core show channels concise":
        lines = _concise(ctx)
    elif command == "core show uptime seconds":
        up = int(ctx.pbx.clock.now() - ctx.pbx.started_at)
        lines = [f"System uptime: {up}", f"Last reload: {up}"]
    else:
        lines = [
            f"No such command '{command}' (type 'core show help {command}' for other "
            "possible commands)"
        ]
    ctx.success("Command output follows", *[("Output", line) for line in lines])


async def _user_event(ctx: ActionContext) -> None:
    name = ctx.field("UserEvent")
    ctx.success("Event Sent")
    headers: Headers = [("Event", "UserEvent"), ("Privilege", "user,all"), ("UserEvent", name)]
    action_id = ctx.message.action_id
    if action_id is not None:
        headers.append(("ActionID", action_id))
    for key, value in ctx.message.headers:
        if key.lower() not in ("action", "actionid", "userevent"):
            headers.append((key, value))
    ctx.pbx.emit(headers)


async def _queue_status(ctx: ActionContext) -> None:
    action_id = ctx.message.action_id
    ctx.send_list(
        "Queue status will follow", [], ev.list_complete("QueueStatusComplete", action_id, 0)
    )


async def _queue_summary(ctx: ActionContext) -> None:
    action_id = ctx.message.action_id
    ctx.send_list(
        "Queue summary will follow", [], ev.list_complete("QueueSummaryComplete", action_id, 0)
    )


async def _queue_add(ctx: ActionContext) -> None:
    if not ctx.field("Queue"):
        ctx.error("'Queue' not specified.")
        return
    ctx.error("Unable to add interface to queue: No such queue")


async def _queue_remove(ctx: ActionContext) -> None:
    ctx.error("Unable to remove interface: Not there")


async def _queue_pause(ctx: ActionContext) -> None:
    ctx.error("Interface not found")


HANDLERS: dict[str, Handler] = {
    "logoff": _logoff,
    "ping": _ping,
    "events": _events,
    "corestatus": _core_status,
    "originate": _originate,
    "redirect": _redirect,
    "hangup": _hangup,
    "setvar": _setvar,
    "getvar": _getvar,
    "playdtmf": _play_dtmf,
    "coreshowchannels": _core_show_channels,
    "status": _status,
    "mixmonitor": _mixmonitor,
    "mixmonitormute": _mixmonitor_mute,
    "stopmixmonitor": _stop_mixmonitor,
    "command": _command,
    "userevent": _user_event,
    "queuestatus": _queue_status,
    "queuesummary": _queue_summary,
    "queueadd": _queue_add,
    "queueremove": _queue_remove,
    "queuepause": _queue_pause,
}
