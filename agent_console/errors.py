"""The web app's exception hierarchy: stable `error_id` slugs, mapped to HTTP by `app`."""

from __future__ import annotations


class ConsoleError(Exception):
    """Base of every error the web app raises itself."""

    error_id = "console-error"


class NotAuthenticated(ConsoleError):
    """No valid session cookie or API token."""

    error_id = "not-authenticated"


class Forbidden(ConsoleError):
    """Authenticated, but the role may not do this."""

    error_id = "forbidden"


class CsrfRejected(ConsoleError):
    """A state-changing browser request without the session's CSRF token."""

    error_id = "csrf-rejected"


class OriginRejected(ConsoleError):
    """A browser request (or WebSocket) from an origin that is not ours."""

    error_id = "origin-rejected"


class InvalidInput(ConsoleError):
    """A request body, path or query parameter that does not match the route's schema."""

    error_id = "invalid-input"

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class RateLimited(ConsoleError):
    """Too many requests from this client; try again later."""

    error_id = "rate-limited"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotFound(ConsoleError):
    error_id = "not-found"
