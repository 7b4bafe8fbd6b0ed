"""The Asterisk simulator's exception hierarchy: each error has a stable `error_id` slug."""

from __future__ import annotations


class SimError(Exception):
    """Base of every error the Asterisk simulator raises."""

    error_id = "asterisk-sim-error"


class DialplanError(SimError):
    """The extensions.conf text cannot be parsed or names a missing context."""

    error_id = "asterisk-sim-dialplan-error"


class ChannelGone(SimError):
    """An operation targeted a channel that has hung up or never existed."""

    error_id = "asterisk-sim-channel-gone"
