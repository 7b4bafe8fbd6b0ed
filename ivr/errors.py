"""The IVR's exception hierarchy: each error has a stable `error_id` slug and no HTTP status."""

from __future__ import annotations


class IvrError(Exception):
    """Base of every error the IVR package raises."""

    error_id = "ivr-error"
