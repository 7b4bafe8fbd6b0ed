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
