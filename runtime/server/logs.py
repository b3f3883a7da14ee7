"""The server's log lines, as text or JSON (`--log-format`): one startup line, one access line per request,
and uvicorn's own lines through the same handler. A record's structured fields travel in `extra={"fields": ...}`."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from longvec.runtime.server.settings import LogFormat

LOGGERS = ("longvec", "uvicorn", "uvicorn.error")


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    return dict(getattr(record, "fields", {}) or {})


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        pairs = " ".join(f"{k}={_text_value(v)}" for k, v in fields_of(record).items())
        line = f"{_timestamp(record)} {record.levelname:<5} {record.getMessage()}" + (f" {pairs}" if pairs else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **fields_of(record),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def _text_value(value: Any) -> str:
    """A value as key=value text that cannot break the line: quoted and escaped (JSON string rules, non-ASCII as
    \\u escapes) when it holds a space, a quote, a backslash or anything unprintable (newlines, tabs, ESC: a
    client's percent-decoded path could otherwise forge log lines or terminal colours)."""
    text = json.dumps(value, default=str) if isinstance(value, (dict, list, tuple)) else str(value)
    plain = text and text.isascii() and text.isprintable() and not any(c in text for c in ' "\\')
    return text if plain else json.dumps(text)


def configure(log_format: LogFormat, level: str) -> None:
    """Send longvec's and uvicorn's records to stderr in one format (uvicorn is started with log_config=None)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
