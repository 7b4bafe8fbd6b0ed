"""The node's help-desk hooks come from the settings: the survey secret signs email-survey links."""

from __future__ import annotations

import pytest

from callcenter.config import load_settings
from callcenter.services import StartupError, build_helpdesk_hooks
from tickets.db import Database
from tickets.models import Channel
from tickets.repository import TicketRepository
from tickets.surveys import Surveys

SURVEY_ENV = "CALLCENTER_HELPDESK_SURVEY_SECRET"


async def test_given_a_survey_secret_when_hooks_built_then_links_are_signed_and_answerable(
    db: Database,
) -> None:
    settings = load_settings(environ={SURVEY_ENV: "a-survey-secret-of-32-bytes-long"})
    hooks = build_helpdesk_hooks(settings, db)
    assert hooks.survey_tokens is not None
    async with db.sessions.begin() as session:
        ticket = await TicketRepository(session).create(
            subject="Printer", channel=Channel.EMAIL, actor="test"
        )
        token = Surveys(session, tokens=hooks.survey_tokens).email_link_token(ticket)
    async with db.sessions.begin() as session:
        answer = await Surveys(session, tokens=hooks.survey_tokens).answer_email(token, score=5)
    assert answer.ticket_id == ticket.id
    # the same secret on another node (a fresh build) checks the link too
    again = build_helpdesk_hooks(settings, db).survey_tokens
    assert again is not None
    assert again.ticket_id(token, answer.answered_at) == ticket.id


def test_given_a_short_survey_secret_when_hooks_built_then_start_up_fails_naming_it(
    db: Database,
) -> None:
    settings = load_settings(environ={SURVEY_ENV: "short"})
    with pytest.raises(StartupError, match=SURVEY_ENV):
        build_helpdesk_hooks(settings, db)


def test_given_no_survey_secret_when_hooks_built_then_email_surveys_are_off(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    hooks = build_helpdesk_hooks(load_settings(environ={}), db)
    assert hooks.survey_tokens is None
    assert "survey links are off" in caplog.text
