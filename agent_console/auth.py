"""Authentication and authorisation: sessions, API tokens, the role check on every route, CSRF.

Every matched route must have a `RouteSpec` (else 403: fail closed). Then, by its `Access`:

- ``user``: a bearer API token (``Authorization: Bearer cct_...``) or the session cookie
  ``cc_session`` (HttpOnly, SameSite=Strict, Secure unless ``web.cookie_secure`` is false),
  whose user's role is in the route's ``roles``. Session requests that change state carry the
  session's CSRF token in ``X-CSRF-Token`` (or a ``csrf_token`` form field), and a session
  WebSocket must come from an allowed origin (cross-site WebSocket hijacking).
- ``metrics``: ``Authorization: Bearer <web.metrics_token>``; with no token configured only a
  loopback peer is answered.
- ``visitor``: the chat widget's WebSocket: the Origin must be allowed; the visitor proves who
  they are in-band with a signed visitor token (`agent_console.chat`).
- ``public``: nothing is checked; these routes carry no data (health, login form, static files).
- ``link``: nothing is checked here; the handler checks the signed token in the path (the email
  survey page, `agent_console.survey_pages`), which is the credential, and rate-limits callers.

Logins are limited per user name and per client address and every attempt is audited.
"""

from __future__ import annotations

import hmac
import html
import ipaddress
import logging
from datetime import timedelta
from urllib.parse import quote

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from agent_console.errors import (
    CsrfRejected,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    OriginRejected,
)
from agent_console.ratelimit import RateLimiter
from agent_console.routes import Access, RouteSpec, parse_input, spec_for
from agent_console.state import CONFIG, DATABASE, LOGIN_LIMITER, PRINCIPAL
from tickets.users import InvalidCredentials, Principal, UserDirectory

log = logging.getLogger(__name__)

SESSION_COOKIE = "cc_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"


def is_loopback(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


def origin_allowed(request: web.Request) -> bool:
    """Same origin as this request, or listed in ``web.allowed_origins``."""
    origin = request.headers.get(hdrs.ORIGIN)
    if not origin:
        return False
    own = f"{request.scheme}://{request.host}"
    return origin == own or origin in request.app[CONFIG].allowed_origins


def login_limiter() -> RateLimiter:
    """Five tries at once, then one every twelve seconds, per user name and per address."""
    return RateLimiter(burst=5, per_second=1 / 12)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.http_exception is not None:
        raise request.match_info.http_exception
    spec = spec_for(request)
    if spec is None:
        raise Forbidden("this route has no access rule")
    await _check_access(request, spec)
    await parse_input(request, spec)
    response: web.StreamResponse = await handler(request)
    return response


async def _check_access(request: web.Request, spec: RouteSpec) -> None:
    config = request.app[CONFIG]
    if spec.access in (Access.PUBLIC, Access.LINK):
        return
    if spec.access == Access.METRICS:
        if config.metrics_token:
            given = _bearer(request)
            if given is None or not hmac.compare_digest(given, config.metrics_token):
                raise NotAuthenticated("metrics need the bearer token (web.metrics_token)")
        elif not is_loopback(request):
            raise Forbidden("without web.metrics_token, /metrics answers loopback clients only")
        return
    if spec.access == Access.VISITOR:
        if not origin_allowed(request):
            raise OriginRejected("this origin may not open the chat")
        return
    who = await authenticate(request)
    if who.role not in spec.roles:
        raise Forbidden(f"role {who.role} may not do this")
    if who.via == "session":
        if request.headers.get(hdrs.UPGRADE, "").lower() == "websocket" and not origin_allowed(
            request
        ):
            raise OriginRejected("this origin may not open the console socket")
        if request.method not in SAFE_METHODS:
            await _check_csrf(request, who)
    request[PRINCIPAL] = who


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def authenticate(request: web.Request) -> Principal:
    token = _bearer(request)
    session_id = request.cookies.get(SESSION_COOKIE)
    if token is None and not session_id:
        raise NotAuthenticated("log in, or send an API token")
    try:
        async with request.app[DATABASE].sessions.begin() as session:
            directory = UserDirectory(session)
            if token is not None:
                return await directory.by_token(token)
            assert session_id is not None
            return await directory.by_session(session_id)
    except InvalidCredentials as err:
        raise NotAuthenticated(str(err)) from err


async def _check_csrf(request: web.Request, who: Principal) -> None:
    given = request.headers.get(CSRF_HEADER, "")
    if not given and request.content_type == "application/x-www-form-urlencoded":
        given = str((await request.post()).get("csrf_token", ""))
    if not given or not hmac.compare_digest(given, who.csrf_token):
        raise CsrfRejected(f"send the session's CSRF token in {CSRF_HEADER}")


# -- login and logout ------------------------------------------------------------------------

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main><h1>Sign in</h1>{error}
<form method="post" action="/login">
<input type="hidden" name="next" value="{next}">
<label>User name <input name="username" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required>
</label>
<button type="submit">Sign in</button>
</form></main></body></html>
"""


def _safe_next(value: str) -> str:
    return value if value.startswith("/") and not value.startswith("//") else "/agent"


async def login_form(request: web.Request) -> web.Response:
    """The sign-in form (carries no data)."""
    page = LOGIN_PAGE.format(error="", next=html.escape(_safe_next(request.query.get("next", ""))))
    return web.Response(text=page, content_type="text/html")


async def login(request: web.Request) -> web.StreamResponse:
    """Check a user name and password; on success set the session cookie."""
    form = request.content_type != "application/json"
    if request.headers.get(hdrs.ORIGIN) and not origin_allowed(request):
        raise OriginRejected("sign in from this site only")
    if form:
        data = {k: str(v) for k, v in (await request.post()).items()}
    else:
        try:
            raw = await request.json()
        except ValueError as err:
            raise InvalidInput("body: not JSON") from err
        data = {k: str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    username, password = data.get("username", "").strip(), data.get("password", "")
    if not username or not password:
        raise InvalidInput("username and password are required", field="username")
    limiter = request.app[LOGIN_LIMITER]
    limiter.hit(f"user:{username.lower()[:64]}", "sign-in attempts")
    limiter.hit(f"addr:{client_address(request)}", "sign-in attempts")
    config = request.app[CONFIG]
    async with request.app[DATABASE].sessions.begin() as session:
        directory = UserDirectory(session)
        user = await directory.authenticate(username, password, source=client_address(request))
        issued = None
        if user is not None:
            lifetime = timedelta(hours=config.session_hours)
            issued = await directory.open_session(user, lifetime=lifetime)
    if user is None or issued is None:
        log.warning("failed sign-in from %s", client_address(request))
        if form:
            page = LOGIN_PAGE.format(
                error='<p role="alert">Wrong user name or password.</p>',
                next=html.escape(_safe_next(data.get("next", ""))),
            )
            return web.Response(text=page, content_type="text/html", status=401)
        raise NotAuthenticated("unknown user or wrong password")
    log.info("user %s signed in", issued.principal.username)
    if form:
        response: web.StreamResponse = web.Response(
            status=303, headers={hdrs.LOCATION: _safe_next(data.get("next", ""))}
        )
    else:
        response = web.json_response(
            {
                "username": user.username,
                "role": str(user.role),
                "csrf_token": issued.principal.csrf_token,
            }
        )
    response.set_cookie(
        SESSION_COOKIE,
        issued.value,
        max_age=int(config.session_hours * 3600),
        path="/",
        secure=config.cookie_secure,
        httponly=True,
        samesite="Strict",
    )
    return response


async def logout(request: web.Request) -> web.Response:
    """End this browser session."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        async with request.app[DATABASE].sessions.begin() as session:
            await UserDirectory(session).close_session(session_id)
    response = web.json_response({"signed_out": True})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


def login_url(request: web.Request) -> str:
    return f"/login?next={quote(request.path_qs, safe='/')}"
