"""Logging set-up: plain or JSON lines, with the call's ids carried by context variables."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator

# Ids bound for the current task (call_id, unique_id, agent_id, queue) and added to every record.
_bound: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "callcenter_log_context", default=()
)


@contextlib.contextmanager
def bind(**ids: str) -> Iterator[None]:
    """Add ids to every log line written by this task (and tasks it starts) inside the block."""
    token = _bound.set(_bound.get() + tuple((k, str(v)) for k, v in ids.items()))
    try:
        yield
    finally:
        _bound.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.ctx = dict(_bound.get())
        return True


class _PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ctx: dict[str, str] = getattr(record, "ctx", {})
        if ctx:
            line += " " + " ".join(f"{k}={v}" for k, v in ctx.items())
        return line


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        out.update(getattr(record, "ctx", {}))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure(level: str = "INFO", *, as_json: bool = False) -> None:
    """Install one stderr handler on the root logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    if as_json:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_PlainFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
