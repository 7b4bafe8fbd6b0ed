"""The help desk's exception hierarchy: every error has a stable `error_id` slug, no HTTP status."""

from __future__ import annotations


class TicketsError(Exception):
    """Base of every error the tickets package raises."""

    error_id = "tickets-error"


class TicketNotFound(TicketsError):
    """No ticket with that id or number."""

    error_id = "ticket-not-found"


class CustomerNotFound(TicketsError):
    """No customer with that id."""

    error_id = "customer-not-found"


class InvalidTransition(TicketsError):
    """The status flow does not allow this change (see `repository.TRANSITIONS`)."""

    error_id = "ticket-invalid-transition"


class TicketMerged(TicketsError):
    """The ticket was merged into another one; changes go to the surviving ticket."""

    error_id = "ticket-merged"


class InvalidMerge(TicketsError):
    """A ticket or customer cannot be merged into itself, into a merged one, or twice."""

    error_id = "merge-invalid"


class InvalidSplit(TicketsError):
    """A split must move some, but not all, of a ticket's calls and messages."""

    error_id = "ticket-split-invalid"


class InvalidLink(TicketsError):
    """A ticket cannot be linked to itself."""

    error_id = "ticket-link-invalid"


class InvalidIdentity(TicketsError):
    """An email address, chat handle or phone number that cannot identify anybody."""

    error_id = "customer-identity-invalid"


class IdentityConflict(TicketsError):
    """The identity is already known to belong to another customer: merge them instead."""

    error_id = "customer-identity-conflict"


class DatabaseUnavailable(TicketsError):
    """The records database could not be reached or refused the connection."""

    error_id = "tickets-database-unavailable"


class MigrationFailed(TicketsError):
    """Bringing the database schema up to date failed."""

    error_id = "tickets-migration-failed"


class TicketClosed(TicketsError):
    """A closed ticket takes no more customer-facing messages or calls; open a follow-up."""

    error_id = "ticket-closed"


class ArticleNotFound(TicketsError):
    """No knowledge-base article (or article version) with that id."""

    error_id = "kb-article-not-found"


class InvalidArticle(TicketsError):
    """An article without a title, with a bad slug or language tag."""

    error_id = "kb-article-invalid"


class InvalidSearchQuery(TicketsError):
    """A search query that is too long to be a question (the limit is in the message)."""

    error_id = "search-query-invalid"


class InvalidCalendar(TicketsError):
    """A service-level calendar that cannot measure time (bad zone, no working hours at all)."""

    error_id = "sla-calendar-invalid"


class InvalidPolicy(TicketsError):
    """A service-level policy with a negative or missing target."""

    error_id = "sla-policy-invalid"


class InvalidSurveyToken(TicketsError):
    """A survey link that is forged, damaged or expired."""

    error_id = "survey-token-invalid"


class SurveyAlreadyAnswered(TicketsError):
    """This survey (one per ticket for email, one per call or chat) was already answered."""

    error_id = "survey-already-answered"


class InvalidSurveyAnswer(TicketsError):
    """A survey score outside its scale."""

    error_id = "survey-answer-invalid"
