"""The ACD's exception hierarchy: each error has a stable `error_id` slug and no HTTP status."""

from __future__ import annotations


class AcdError(Exception):
    """Base of every error the ACD package raises."""

    error_id = "acd-error"
