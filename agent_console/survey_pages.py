"""The customer's email survey page: ``GET /survey/{token}`` shows the questions, ``POST`` answers.

No sign-in: the signed token in the link (`tickets.surveys.SurveyTokens`) is the credential, so
these routes are ``Access.LINK`` and every request is rate-limited per client address. Answers
go through `tickets.surveys.Surveys.answer_email` (once per ticket). Every refusal is an HTML
page with a 4xx status that says what happened: 404 for a forged, damaged or expired link (or
when the help desk has no survey secret), 409 when the survey was already answered, 400 for an
answer outside the scale (the form again, nothing stored), 429 when an address asks too often.
The page never names the token in a log line and tells the browser to send no Referer.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping
from importlib import resources
from string import Template

from aiohttp import web

from agent_console.auth import client_address
from agent_console.errors import NotFound, RateLimited
from agent_console.ratelimit import RateLimiter
from agent_console.state import DATABASE, HELPDESK
from tickets.errors import InvalidSurveyAnswer, InvalidSurveyToken, SurveyAlreadyAnswered
from tickets.surveys import MAX_COMMENT, Surveys, SurveyTokens

__all__ = ["SURVEY_LIMITER", "survey_answer", "survey_limiter", "survey_page"]

log = logging.getLogger(__name__)

SURVEY_LIMITER = web.AppKey("survey_limiter", RateLimiter)
PAGE_STATUS: dict[type[Exception], int] = {
    InvalidSurveyAnswer: 400,
    InvalidSurveyToken: 404,
    NotFound: 404,
    SurveyAlreadyAnswered: 409,
    RateLimited: 429,
}
PAGE_ERRORS = tuple(PAGE_STATUS)
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
SCORES = {1: "very poor", 2: "poor", 3: "all right", 4: "good", 5: "very good"}
RESOLVED = {"yes": True, "no": False, "": None}


def survey_limiter() -> RateLimiter:
    """Twenty requests at once, then one every five seconds, per client address."""
    return RateLimiter(burst=20, per_second=1 / 5)


async def survey_page(request: web.Request) -> web.Response:
    """The questions for a genuine, unanswered link; an error page otherwise."""
    try:
        tokens = _admit(request)
        async with request.app[DATABASE].sessions() as session:
            surveys = Surveys(session, request.app[HELPDESK].clock, tokens)
            ticket, answered = await surveys.email_survey(_token(request))
        if answered is not None:
            raise SurveyAlreadyAnswered("You already answered this survey. Thank you!")
        return _page(200, "How did we do?", _form(ticket.number))
    except PAGE_ERRORS as err:
        return _refused(err)


async def survey_answer(request: web.Request) -> web.Response:
    """Store the answer once; the form again (400) when it is outside the scale."""
    number = ""
    try:
        tokens = _admit(request)
        form = await request.post()
        async with request.app[DATABASE].sessions.begin() as session:
            surveys = Surveys(session, request.app[HELPDESK].clock, tokens)
            ticket, _answered = await surveys.email_survey(_token(request))
            number = ticket.number
            response = await surveys.answer_email(
                _token(request),
                score=_score(form),
                resolved=_resolved(form),
                comment=str(form.get("comment", "")),
            )
        log.info("email survey answered on ticket %s (score %s)", number, response.score)
        return _page(200, "Thank you!", "<p>Your answer is recorded. Thank you for your time.</p>")
    except InvalidSurveyAnswer as err:
        if not number:
            return _refused(err)
        alert = f'<p role="alert">{html.escape(str(err))}</p>'
        return _page(400, "How did we do?", alert + _form(number))
    except PAGE_ERRORS as err:
        return _refused(err)


def _admit(request: web.Request) -> SurveyTokens:
    """Count the request against its address; the survey tokens, or 404 without a secret."""
    request.app[SURVEY_LIMITER].hit(client_address(request), "survey requests")
    tokens = request.app[HELPDESK].hooks.survey_tokens
    if tokens is None:
        raise NotFound(
            "This help desk does not run email surveys (no helpdesk.survey_secret is set)."
        )
    return tokens


def _token(request: web.Request) -> str:
    return request.match_info["token"]


def _score(form: Mapping[str, object]) -> int:
    raw = str(form.get("score", "")).strip()
    if not raw.isdigit() or int(raw) not in SCORES:
        raise InvalidSurveyAnswer("Please choose a score from 1 (very poor) to 5 (very good).")
    return int(raw)


def _resolved(form: Mapping[str, object]) -> bool | None:
    raw = str(form.get("resolved", "")).strip().lower()
    if raw not in RESOLVED:
        raise InvalidSurveyAnswer("Was your problem solved? Answer yes or no (or leave it out).")
    return RESOLVED[raw]


def _form(number: str) -> str:
    scores = "\n".join(
        f'<label><input type="radio" name="score" value="{n}" required> {n} ({label})</label>'
        for n, label in SCORES.items()
    )
    return (
        f"<p>Your ticket {html.escape(number)} is solved. Please rate our service.</p>\n"
        '<form method="post">\n'
        f"<fieldset><legend>How satisfied are you?</legend>\n{scores}\n</fieldset>\n"
        "<fieldset><legend>Is your problem solved?</legend>\n"
        '<label><input type="radio" name="resolved" value="yes"> yes</label>\n'
        '<label><input type="radio" name="resolved" value="no"> no</label>\n</fieldset>\n'
        f'<label for="comment">Anything else? (optional)</label>\n'
        f'<textarea id="comment" name="comment" maxlength="{MAX_COMMENT}"></textarea>\n'
        '<p><button type="submit">Send</button></p>\n</form>'
    )


def _page(status: int, title: str, content: str) -> web.Response:
    template = resources.files("agent_console.static").joinpath("survey.html").read_text("utf-8")
    body = Template(template).substitute(title=html.escape(title), content=content)
    headers = dict(HEADERS)
    return web.Response(
        text=body, status=status, content_type="text/html", charset="utf-8", headers=headers
    )


def _refused(err: Exception) -> web.Response:
    status = next(PAGE_STATUS[k] for k in type(err).__mro__ if k in PAGE_STATUS)
    titles = {404: "This survey link does not work", 409: "Already answered"}
    title = titles.get(status, "Sorry")
    response = _page(status, title, f'<p role="alert">{html.escape(_sentence(err))}</p>')
    if isinstance(err, RateLimited):
        response.headers["Retry-After"] = str(max(1, round(err.retry_after)))
    return response


def _sentence(err: Exception) -> str:
    text = str(err)
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!")) else ".")
