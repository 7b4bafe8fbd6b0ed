"""The agent's ACD state over REST: go ready, pause with a reason, log out, end wrap-up early.

The signed-in agent acts on themselves (``/api/agent/...``: the ACD agent id is the user
name); a supervisor or admin reads and sets another agent's state
(``/api/agents/{agent_id}/state``). Each handler resolves the agent (a user name that is no ACD
agent is a 404), checks the request (``reason`` only with ``paused``, and required there), asks
the :class:`~acd.service.AcdService` and answers the agent's state as Redis holds it afterwards
(state, pause reason, per-channel load and capacity), so what the console shows is what the ACD
routes on.

Going ready or paused logs the agent in first when they are logged out (the ACD's
``agent_login`` only refreshes the profile of an agent already in, so a repeat is harmless);
``logged_out`` rescinds a pending offer (its item goes back to its place in the queue) while
items the agent already works on stay theirs until they end. Without an ACD on the node every
route answers 503 (``no-acd``); the ACD's own errors (Redis unreachable, ...) reach the app's
error middleware, which maps them with :data:`ACD_STATUS`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web

from acd.adapters.redis_state import AgentRecord, RedisStateError, RedisStateUnavailable
from acd.domain.work import Channel
from acd.errors import AcdError
from acd.service import AcdService, ItemEnded, UnknownItem
from agent_console.errors import ConsoleError, InvalidInput, NotFound
from agent_console.routes import AGENTS, JSON_BODY, SUPERVISORS, RouteSpec
from agent_console.schema import enum, obj, string
from agent_console.state import principal

__all__ = [
    "ACD",
    "ACD_STATUS",
    "AGENT_STATE_ROUTES",
    "NoAcd",
    "NotAnAcdAgent",
    "StateConflict",
]

log = logging.getLogger(__name__)

ACD = web.AppKey("acd", AcdService)
STATES = ("ready", "paused", "logged_out")
AGENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


class NoAcd(ConsoleError):
    """This node runs no ACD, so there is no agent state to read or set."""

    error_id = "no-acd"


class NotAnAcdAgent(NotFound):
    """The user name is not an agent of the ACD configuration."""

    error_id = "acd-agent-unknown"


class StateConflict(ConsoleError):
    """The agent's state does not allow this now (e.g. wrap-up done outside wrap-up)."""

    error_id = "acd-agent-state-conflict"


#: Merged into the app's exception -> HTTP status table (most specific class wins).
ACD_STATUS: dict[type[Exception], int] = {
    NoAcd: 503,
    StateConflict: 409,
    RedisStateUnavailable: 503,
    RedisStateError: 500,
    UnknownItem: 404,
    ItemEnded: 409,
    AcdError: 409,
}

CHANNEL_LOAD = obj(
    {"load": {"type": "integer"}, "capacity": {"type": "integer"}}, required=("load", "capacity")
)
AGENT_STATE = obj(
    {
        "agent": {"type": "string"},
        "state": enum(
            ("logged_out", "ready", "reserved", "on_work", "wrap_up", "missed", "paused")
        ),
        "pause_reason": {"type": ["string", "null"]},
        "wrap_up_seconds": {"type": "number", "description": "left of the running wrap-up"},
        "channels": {
            "type": "object",
            "properties": {channel.value: CHANNEL_LOAD for channel in Channel},
        },
    },
    required=("agent", "state", "pause_reason", "channels"),
)
STATE_CHANGE = obj(
    {"state": enum(STATES), "reason": string(64, min_length=1)},
    required=("state",),
)


def _acd(request: web.Request) -> AcdService:
    acd = request.app.get(ACD)
    if acd is None:
        raise NoAcd("no ACD on this node (acd.config_file is not set)")
    return acd


def _agent(request: web.Request, acd: AcdService, *, own: bool) -> str:
    agent_id = principal(request).username if own else request.match_info["agent_id"]
    if not own and not AGENT_ID.fullmatch(agent_id):
        raise InvalidInput("agent_id: not an agent id", field="agent_id")
    if agent_id not in acd.config.agents:
        raise NotAnAcdAgent(f"{agent_id} is not an agent of the ACD configuration")
    return agent_id


async def state_of(acd: AcdService, agent_id: str) -> dict[str, Any]:
    """The agent's state as Redis holds it now (logged out, configured capacity, if never in)."""
    record: AgentRecord | None = await acd.state.agent(agent_id)
    if record is None or not record.logged_in:
        capacity = acd.config.agents[agent_id].profile.capacity
        loads = record.load if record is not None else {}
        channels = {
            c.value: {"load": int(loads.get(c.value, 0)), "capacity": capacity.of(c)}
            for c in Channel
        }
        return {
            "agent": agent_id,
            "state": "logged_out",
            "pause_reason": None,
            "channels": channels,
        }
    return {
        "agent": agent_id,
        "state": record.state,
        "pause_reason": record.pause_reason,
        "wrap_up_seconds": max(0.0, (record.wrap_until_ms - record.server_ms) / 1000),
        "channels": {
            c.value: {
                "load": int(record.load.get(c.value, 0)),
                "capacity": int(record.capacity.get(c.value, 0)),
            }
            for c in Channel
        },
    }


async def set_state(acd: AcdService, agent_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Apply ``{"state": ..., "reason": ...}`` (see the module docstring); the state after it."""
    want = body["state"]
    reason = body.get("reason")
    if want == "paused":
        reason = (reason or "").strip()
        if not reason:
            raise InvalidInput("reason: required to pause", field="reason")
        await acd.login(agent_id, paused=reason)  # logged in already: the profile only
        await acd.pause(agent_id, reason)
    elif reason is not None:
        raise InvalidInput(f"reason: only for paused, not {want}", field="reason")
    elif want == "ready":
        await acd.login(agent_id)
        await acd.ready(agent_id)
    else:
        await acd.logout(agent_id)
    return await state_of(acd, agent_id)


# -- handlers --------------------------------------------------------------------------------


async def get_own_state(request: web.Request) -> web.Response:
    acd = _acd(request)
    return web.json_response(await state_of(acd, _agent(request, acd, own=True)))


async def set_own_state(request: web.Request) -> web.Response:
    acd = _acd(request)
    agent_id = _agent(request, acd, own=True)
    out = await set_state(acd, agent_id, request[JSON_BODY])
    log.info("agent %s is now %s", agent_id, out["state"])
    return web.json_response(out)


async def own_wrap_up_done(request: web.Request) -> web.Response:
    acd = _acd(request)
    agent_id = _agent(request, acd, own=True)
    current = await state_of(acd, agent_id)
    if current["state"] != "wrap_up":
        raise StateConflict(f"not in wrap-up (the agent is {current['state']})")
    await acd.wrap_up_done(agent_id)
    return web.json_response(await state_of(acd, agent_id))


async def get_agent_state(request: web.Request) -> web.Response:
    acd = _acd(request)
    return web.json_response(await state_of(acd, _agent(request, acd, own=False)))


async def set_agent_state(request: web.Request) -> web.Response:
    acd = _acd(request)
    agent_id = _agent(request, acd, own=False)
    out = await set_state(acd, agent_id, request[JSON_BODY])
    log.info("agent %s is now %s (set by %s)", agent_id, out["state"], principal(request).username)
    return web.json_response(out)


AGENT_STATE_ROUTES = (
    RouteSpec(
        "GET",
        "/api/agent/state",
        get_own_state,
        "The signed-in agent's ACD state, pause reason and per-channel load/capacity",
        roles=AGENTS,
        tag="agent",
        response=AGENT_STATE,
    ),
    RouteSpec(
        "POST",
        "/api/agent/state",
        set_own_state,
        "Go ready, pause with a reason, or log out of the ACD (ready/paused log in)",
        roles=AGENTS,
        tag="agent",
        body=STATE_CHANGE,
        response=AGENT_STATE,
    ),
    RouteSpec(
        "POST",
        "/api/agent/wrap-up-done",
        own_wrap_up_done,
        "End the running wrap-up now: ready for the next item (409 outside wrap-up)",
        roles=AGENTS,
        tag="agent",
        response=AGENT_STATE,
    ),
    RouteSpec(
        "GET",
        "/api/agents/{agent_id}/state",
        get_agent_state,
        "An agent's ACD state (supervisors)",
        roles=SUPERVISORS,
        tag="agent",
        response=AGENT_STATE,
    ),
    RouteSpec(
        "POST",
        "/api/agents/{agent_id}/state",
        set_agent_state,
        "Set an agent's ACD state: ready, paused with a reason, logged out (supervisors)",
        roles=SUPERVISORS,
        tag="agent",
        body=STATE_CHANGE,
        response=AGENT_STATE,
    ),
)
