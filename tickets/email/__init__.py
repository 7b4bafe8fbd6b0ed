"""Email channel of the help desk: MIME parsing, reply threading, loop protection, SMTP in and out.

Modules: ``parse`` (bytes -> ParsedMessage, never raises), ``threading`` (pure: which ticket a
message belongs to), ``loops`` (pure: auto-replies, mail loops, per-sender rate limit), ``ports``
(the Protocols this channel needs from the ticket records, with in-memory versions for tests),
``smtp_in`` (aiosmtpd inbound server and the inbound pipeline), ``smtp_out`` (outbound
notifications with aiosmtplib).
"""

from __future__ import annotations


class EmailChannelError(Exception):
    """Base of every error the email channel raises."""

    error_id = "email-error"


class EmailConfigError(EmailChannelError):
    """A setting of the email channel is missing or invalid (the message names it)."""

    error_id = "email-config-invalid"


class EmailDeliveryError(EmailChannelError):
    """An outbound message could not be handed to the SMTP relay."""

    error_id = "email-delivery-failed"
