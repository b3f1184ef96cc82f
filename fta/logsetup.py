"""Logging: coloured console, rotating file with retention, JSON lines, optional syslog.

Handlers go on the root logger only, so every logger (ours under ``fta``, Prefect's, libraries') reaches the same
file once. Under Prefect (the flows), Prefect's own console and API handlers stay in place and ``fta`` loggers are
sent to the UI through ``PREFECT_LOGGING_EXTRA_LOGGERS=fta``; ``configure_logging(..., console=False)`` then adds
only the file and syslog handlers so no line is printed twice.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from fta.settings import Settings

_HANDLER_MARK = "_fta_handler"
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_COLOURS = {
    logging.DEBUG: "\x1b[2m",
    logging.INFO: "\x1b[36m",
    logging.WARNING: "\x1b[33m",
    logging.ERROR: "\x1b[31m",
    logging.CRITICAL: "\x1b[1;31m",
}
_RESET = "\x1b[0m"


def record_extras(record: logging.LogRecord) -> dict[str, Any]:
    """Fields given with ``extra=`` (e.g. the audit line's source, destination, size, checksum)."""
    return {key: value for key, value in vars(record).items() if key not in _STANDARD_ATTRS and not key.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(record_extras(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """``HH:MM:SS.mmm | LEVEL   | logger - message``, the level coloured when writing to a terminal."""

    def __init__(self, colour: bool) -> None:
        super().__init__("%(asctime)s.%(msecs)03d | %(levelname)-8s | %(name)s - %(message)s", "%H:%M:%S")
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if self.colour:
            colour = _COLOURS.get(record.levelno, "")
            text = text.replace(f"| {record.levelname:<8} |", f"| {colour}{record.levelname:<8}{_RESET} |", 1)
        return text


class PlainFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s | %(levelname)-8s | %(name)s - %(message)s")


def wants_colour(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return hasattr(stream, "isatty") and stream.isatty()


def _syslog_handler(address: str) -> logging.Handler:
    if address.startswith("/"):
        return logging.handlers.SysLogHandler(address=address)
    host, _, port = address.rpartition(":")
    return logging.handlers.SysLogHandler(address=(host or "localhost", int(port or 514)))


def _mark(handler: logging.Handler) -> logging.Handler:
    setattr(handler, _HANDLER_MARK, True)
    return handler


def configure_logging(settings: Settings, console: bool = True, stream: TextIO | None = None) -> list[logging.Handler]:
    """Install the agent's handlers on the root logger (again-callable: earlier ones are replaced)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    json_lines = settings.log_format == "json"
    handlers: list[logging.Handler] = []
    if console:
        out = stream or sys.stderr
        console_handler = logging.StreamHandler(out)
        console_handler.setFormatter(JsonFormatter() if json_lines else ConsoleFormatter(wants_colour(out)))
        handlers.append(console_handler)
    if settings.log_file_path is not None:
        path = Path(settings.log_file_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=settings.log_max_bytes, backupCount=settings.log_backup_count, encoding="utf-8"
        )
        file_handler.setFormatter(JsonFormatter() if json_lines else PlainFormatter())
        handlers.append(file_handler)
    if settings.syslog_address:
        syslog = _syslog_handler(settings.syslog_address)
        syslog.setFormatter(logging.Formatter("fta[%(process)d]: %(levelname)s %(name)s - %(message)s"))
        handlers.append(syslog)
    for handler in handlers:
        root.addHandler(_mark(handler))
    logging.getLogger("fta").setLevel(settings.log_level)
    return handlers
