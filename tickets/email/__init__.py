"""Email channel of the help desk: MIME parsing, reply threading, loop protection, SMTP in and out.

Modules: ``parse`` (bytes -> ParsedMessage, never raises), ``threading`` (pure: which ticket a
message belongs to), ``loops`` (pure: auto-replies, mail loops, per-sender rate limit), ``ports``
(the Protocols this channel needs from the ticket records, with in-memory versions for tests),
``smtp_in`` (aiosmtpd inbound server and the inbound pipeline), ``smtp_out`` (outbound
notifications with aiosmtplib), ``outbox`` (the SQL outbox they wait in, and its sender),
``chat_mail`` (offline-chat acknowledgements through it), ``outbound`` (their composition).
"""

from __future__ import annotations


class EmailChannelError(Exception):
    """Base of every error the email channel raises."""

    error_id = "email-error"


class EmailConfigError(EmailChannelError):
    """A setting of the email channel is missing or invalid (the message names it)."""

    error_id = "email-config-invalid"


class EmailDeliveryError(EmailChannelError):
    """An outbound message could not be handed to the SMTP relay.

    ``permanent`` is true when the relay refused it for good (a 5xx reply): retrying cannot help.
    """

    error_id = "email-delivery-failed"

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
