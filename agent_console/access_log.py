"""The web app's access log: one line per request, with no credential or address in it.

aiohttp's default access log writes the request line as sent, which here would put the email
survey token (``/survey/<token>``, a credential) and customer email addresses or phone numbers
in query strings (``/api/customers/search?email=...``) into the log. This one writes the path
only, with link tokens masked, and never the query string. Give it to the runner:
``web.AppRunner(app, access_log_class=MaskedAccessLogger)``.
"""

from __future__ import annotations

import logging
import re

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

__all__ = ["MaskedAccessLogger", "masked_path"]

_LINK_TOKEN = re.compile(r"^(/survey/)[^/]+")


def masked_path(path: str) -> str:
    """``path`` with the token of a link route replaced by an ellipsis."""
    return _LINK_TOKEN.sub(r"\1…", path)


class MaskedAccessLogger(AbstractAccessLogger):
    """``<peer> "<method> <masked path>" <status> <bytes> <seconds>`` at INFO."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %d %.3fs',
            request.remote or "-",
            request.method,
            masked_path(request.path),
            response.status,
            response.body_length,
            time,
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
