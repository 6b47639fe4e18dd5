"""The server's log lines: human text by default, or one JSON object per line (`--log-format
json`) that a log collector can index by task, client and round.

Handlers bind the task and client of a connection once (`log_context`, a context variable, so
every line logged while serving it, in tasks it starts too, carries them); a call may add or
override a field with `extra={"task": ..., "client": ..., "round": ...}`. In JSON each line has
`time`, `level`, `logger`, `message` and the three fields (null when unknown).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Final, Literal

LogFormat = Literal["text", "json"]

FIELDS: Final = ("task", "client", "round")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

_context: ContextVar[Mapping[str, object] | None] = ContextVar("disco_log_context", default=None)


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Attach `fields` (task, client, round) to every line logged in this context."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def fields_of(record: logging.LogRecord) -> dict[str, object]:
    """The record's task, client and round: from `extra`, else the bound context, else None."""
    bound = _context.get() or {}
    return {name: getattr(record, name, bound.get(name)) for name in FIELDS}


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **fields_of(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """The root logger to stderr at `level` in `log_format`. With json, uvicorn's loggers are
    left unconfigured (`disco.server.runner`) and propagate here, so they are JSON too."""
    numeric = 5 if level == "trace" else getattr(logging, level.upper())
    handler = logging.StreamHandler()
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    logging.basicConfig(level=numeric, handlers=[handler], force=True)
