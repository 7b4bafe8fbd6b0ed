"""Typed application and request state keys shared by the web app's modules."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from agent_console.errors import NotAuthenticated
from agent_console.ratelimit import RateLimiter
from agent_console.service import HelpDesk
from tickets.db import Database
from tickets.users import Principal


@dataclass(frozen=True, slots=True)
class WebConfig:
    """What the web app needs from `callcenter.config.WebSettings`, secrets as plain strings."""

    secret: str = field(repr=False)
    metrics_token: str = field(default="", repr=False)
    allowed_origins: tuple[str, ...] = ()
    cookie_secure: bool = True
    session_hours: float = 12.0


CONFIG = web.AppKey("web_config", WebConfig)
DATABASE = web.AppKey("database", Database)
HELPDESK = web.AppKey("helpdesk", HelpDesk)
LOGIN_LIMITER = web.AppKey("login_limiter", RateLimiter)
PRINCIPAL = web.RequestKey("principal", Principal)


def principal(request: web.Request) -> Principal:
    found: Principal | None = request.get(PRINCIPAL)
    if found is None:
        raise NotAuthenticated("log in first")
    return found
